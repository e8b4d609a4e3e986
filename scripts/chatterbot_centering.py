#!/usr/bin/env python3
"""The language-centring experiment of BENCHMARKS.md (issue 3), on the cached embeddings.

Trains the same kind of head in numpy (standardised features, softmax, class weights, L2 1e-2,
Adam) on data/chatterbot/train.jsonl and prints each language's macro-F1 as a share of English
(raw), once on the embeddings as they are and once with every language centred on its own mean
(plus the English training mean). Run scripts/chatterbot_eval.sh first (it fills the cache).

Usage: python3 -m venv /tmp/np && /tmp/np/bin/pip install numpy==1.26.4
       /tmp/np/bin/python scripts/chatterbot_centering.py .cache/embeddings/<key>.emb
"""
import json, hashlib, struct, numpy as np, sys, collections
path = sys.argv[1]
b = open(path,'rb').read(); assert b[:8]==b'TRIEMB01'; H = struct.unpack('<I', b[8:12])[0]; p=12; emb={}
while p < len(b):
    k=b[p:p+32]; n=struct.unpack('<I',b[p+32:p+36])[0]; p+=36
    v=np.frombuffer(b[p:p+4*H*n],dtype=np.float32).reshape(n,H).mean(0); p+=4*H*n; emb[k]=v
def load(f):
    rs=[json.loads(l) for l in open(f)]
    X=np.stack([emb[hashlib.sha256(r['text'].encode()).digest()] for r in rs]); return rs,X
tr,Xtr=load('data/chatterbot/train.jsonl'); ev,Xev=load('data/chatterbot/eval.jsonl')
labels=sorted({r['label'] for r in tr}); ytr=np.array([labels.index(r['label']) for r in tr]); yev=np.array([labels.index(r['label']) for r in ev])
langs=np.array([r['lang'] for r in ev])
def fit(X,y,l2=1e-2,epochs=300,lr=0.05):
    mu=X.mean(0); sd=X.std(0)+1e-6; Z=(X-mu)/sd; W=np.zeros((len(labels),X.shape[1])); b=np.zeros(len(labels))
    cw=len(y)/(len(labels)*np.bincount(y,minlength=len(labels)).clip(1))
    m=[np.zeros_like(W),np.zeros_like(b)]; v=[np.zeros_like(W),np.zeros_like(b)]
    Y=np.eye(len(labels))[y]
    for t in range(1,epochs+1):
        Lg=Z@W.T+b; Lg-=Lg.max(1,keepdims=True); P=np.exp(Lg); P/=P.sum(1,keepdims=True)
        G=(P-Y)*cw[y][:,None]/cw[y].sum(); gW=G.T@Z+2*l2*W; gb=G.sum(0)
        for i,(p_,g) in enumerate(((W,gW),(b,gb))):
            m[i]=0.9*m[i]+0.1*g; v[i]=0.999*v[i]+0.001*g*g; p_-= lr*(m[i]/(1-0.9**t))/(np.sqrt(v[i]/(1-0.999**t))+1e-8)
    return lambda X: (((X-mu)/sd)@W.T+b).argmax(1)
def macro(yt,yp):
    f=[]
    for k in set(yt):
        tp=((yp==k)&(yt==k)).sum(); fp=((yp==k)&(yt!=k)).sum(); fn=((yp!=k)&(yt==k)).sum()
        f.append(0 if tp==0 else 2*tp/(2*tp+fp+fn))
    return np.mean(f)
def report(name, pred):
    out={l: macro(yev[langs==l], pred[langs==l]) for l in sorted(set(langs))}
    en=out['en']; print(name, ' '.join(f"{l}:{v/en:.0%}" for l,v in out.items() if l!='en'), f"en={en:.3f}", 'min', f"{min(v/en for l,v in out.items()):.0%}")
clf=fit(Xtr,ytr); report('plain   ', clf(Xev))
# per-language centering: subtract each language's own mean (eval texts, unlabeled), add English train mean
mu_en=Xtr.mean(0); Xc=Xev.copy()
for l in set(langs): Xc[langs==l]=Xev[langs==l]-Xev[langs==l].mean(0)+mu_en
report('centred ', clf(Xc))
