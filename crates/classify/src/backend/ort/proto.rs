//! A small protobuf writer for ONNX models: the handful of `onnx.proto` messages a graph
//! needs (nodes, initializers, inputs and outputs, the model), so the `ort` backend builds its
//! graphs in memory from the weights candle loaded, with no conversion step or Python.

// ---- protobuf wire format ------------------------------------------------------------------

pub(crate) fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(crate) fn key(out: &mut Vec<u8>, field: u32, wire: u8) {
    varint(out, ((field as u64) << 3) | wire as u64);
}

pub(crate) fn int(out: &mut Vec<u8>, field: u32, v: i64) {
    key(out, field, 0);
    varint(out, v as u64);
}

pub(crate) fn bytes(out: &mut Vec<u8>, field: u32, b: &[u8]) {
    key(out, field, 2);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

pub(crate) fn f32_field(out: &mut Vec<u8>, field: u32, v: f32) {
    key(out, field, 5);
    out.extend_from_slice(&v.to_le_bytes());
}

// onnx.proto's TensorProto.DataType
/// ONNX Runtime's operator domain.
pub(crate) const MS: &str = "com.microsoft";

pub(crate) const FLOAT: i64 = 1;
pub(crate) const INT8: i64 = 3;
pub(crate) const INT64: i64 = 7;

/// An attribute of a node.
pub(crate) enum Attr {
    Int(i64),
    Float(f32),
    Ints(Vec<i64>),
}

/// An ONNX graph being written: nodes, initializers, one input and one output.
pub(crate) struct Graph {
    pub(crate) nodes: Vec<u8>,
    pub(crate) inits: Vec<u8>,
    pub(crate) n: usize,
    /// The probed input ranges, `[k]` each, in the order of the products.
    pub(crate) probes: Vec<String>,
}

impl Graph {
    pub(crate) fn new() -> Self {
        Graph {
            nodes: Vec::new(),
            inits: Vec::new(),
            n: 0,
            probes: Vec::new(),
        }
    }

    pub(crate) fn fresh(&mut self, stem: &str) -> String {
        self.n += 1;
        format!("{stem}_{}", self.n)
    }

    /// Adds a node; returns the name of its (first) output.
    pub(crate) fn node(
        &mut self,
        op: &str,
        domain: &str,
        inputs: &[&str],
        outputs: usize,
        attrs: &[(&str, Attr)],
    ) -> Vec<String> {
        let outs: Vec<String> = (0..outputs).map(|_| self.fresh(op)).collect();
        let mut m = Vec::new();
        for i in inputs {
            bytes(&mut m, 1, i.as_bytes());
        }
        for o in &outs {
            bytes(&mut m, 2, o.as_bytes());
        }
        bytes(&mut m, 3, outs[0].as_bytes());
        bytes(&mut m, 4, op.as_bytes());
        for (name, value) in attrs {
            let mut a = Vec::new();
            bytes(&mut a, 1, name.as_bytes());
            match value {
                Attr::Float(f) => {
                    f32_field(&mut a, 2, *f);
                    int(&mut a, 20, 1);
                }
                Attr::Int(i) => {
                    int(&mut a, 3, *i);
                    int(&mut a, 20, 2);
                }
                Attr::Ints(v) => {
                    for i in v {
                        int(&mut a, 8, *i);
                    }
                    int(&mut a, 20, 7);
                }
            }
            bytes(&mut m, 5, &a);
        }
        if !domain.is_empty() {
            bytes(&mut m, 7, domain.as_bytes());
        }
        bytes(&mut self.nodes, 1, &m);
        outs
    }

    pub(crate) fn op(&mut self, op: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        self.node(op, "", inputs, 1, attrs).remove(0)
    }

    /// Adds a constant tensor; returns its name.
    pub(crate) fn init(
        &mut self,
        stem: &str,
        dims: &[usize],
        data_type: i64,
        raw: &[u8],
    ) -> String {
        let name = self.fresh(stem);
        let mut t = Vec::new();
        for d in dims {
            int(&mut t, 1, *d as i64);
        }
        int(&mut t, 2, data_type);
        bytes(&mut t, 8, name.as_bytes());
        bytes(&mut t, 9, raw);
        bytes(&mut self.inits, 5, &t);
        name
    }

    pub(crate) fn floats(&mut self, stem: &str, dims: &[usize], v: &[f32]) -> String {
        let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(stem, dims, FLOAT, &raw)
    }

    pub(crate) fn int64s(&mut self, stem: &str, v: &[i64]) -> String {
        let raw: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.init(stem, &[v.len()], INT64, &raw)
    }

    /// The whole model: the graph with one input and its outputs, f32 `[1, len, width]` each.
    pub(crate) fn model(
        self,
        (input, in_width): (&str, usize),
        outputs: &[(&str, usize)],
    ) -> Vec<u8> {
        let value_info = |name: &str, width: usize| {
            let mut dims = Vec::new();
            for value in [Some(1i64), None, Some(width as i64)] {
                let mut d = Vec::new();
                match value {
                    Some(v) => int(&mut d, 1, v),
                    None => bytes(&mut d, 2, b"len"),
                }
                bytes(&mut dims, 1, &d);
            }
            let mut tensor = Vec::new();
            int(&mut tensor, 1, FLOAT);
            bytes(&mut tensor, 2, &dims);
            let mut ty = Vec::new();
            bytes(&mut ty, 1, &tensor);
            let mut vi = Vec::new();
            bytes(&mut vi, 1, name.as_bytes());
            bytes(&mut vi, 2, &ty);
            vi
        };
        let mut g = self.nodes;
        bytes(&mut g, 2, b"encoder");
        g.extend_from_slice(&self.inits);
        bytes(&mut g, 11, &value_info(input, in_width));
        for (output, width) in outputs {
            bytes(&mut g, 12, &value_info(output, *width));
        }
        let mut m = Vec::new();
        int(&mut m, 1, 8); // IR version 8 (ONNX 1.10+)
        for (domain, version) in [("", 17i64), (MS, 1), (super::ops::DOMAIN, 1)] {
            let mut o = Vec::new();
            bytes(&mut o, 1, domain.as_bytes());
            int(&mut o, 2, version);
            bytes(&mut m, 8, &o);
        }
        bytes(&mut m, 2, b"triage");
        bytes(&mut m, 7, &g);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_are_protobuf_varints() {
        // examples from the protobuf encoding guide
        for (v, want) in [
            (0u64, vec![0x00]),
            (1, vec![0x01]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, want, "{v}");
        }
        // a negative int64 takes ten bytes, as protobuf writes it
        let mut out = Vec::new();
        int(&mut out, 3, -1);
        assert_eq!(out.len(), 11);
        assert_eq!(out[0], 3 << 3);
    }
}
