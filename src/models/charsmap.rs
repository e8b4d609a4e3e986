//! Builds a sentencepiece `precompiled_charsmap`: a darts-clone double-array trie over the
//! UTF-8 bytes of each source code point, followed by the NUL-terminated replacement strings.
//! This is the form in which `tokenizers`' `Precompiled` normalizer (and sentencepiece) read a
//! normalisation table.

use std::collections::{BTreeMap, HashSet};

#[derive(Default)]
struct Node {
    children: BTreeMap<u8, usize>,
    value: Option<u32>,
}

/// Serialises `map` (source code point -> replacement, empty = delete) as a charsmap blob.
pub fn build(map: &[(char, String)]) -> Vec<u8> {
    let mut normalized = Vec::<u8>::new();
    let mut nodes = vec![Node::default()];
    for (c, rep) in map {
        let value = normalized.len() as u32;
        normalized.extend_from_slice(rep.as_bytes());
        normalized.push(0);
        let mut buf = [0u8; 4];
        let mut n = 0;
        for &b in c.encode_utf8(&mut buf).as_bytes() {
            n = match nodes[n].children.get(&b) {
                Some(&child) => child,
                None => {
                    nodes.push(Node::default());
                    let child = nodes.len() - 1;
                    nodes[n].children.insert(b, child);
                    child
                }
            };
        }
        nodes[n].value = Some(value);
    }

    let mut da = DoubleArray::default();
    da.ensure(256);
    da.used[0] = true;
    da.place(&nodes, 0, 0);
    let mut out = Vec::with_capacity(da.units.len() * 4 + 4 + normalized.len());
    out.extend_from_slice(&((da.units.len() * 4) as u32).to_le_bytes());
    for u in &da.units {
        out.extend_from_slice(&u.to_le_bytes());
    }
    out.extend_from_slice(&normalized);
    out
}

#[derive(Default)]
struct DoubleArray {
    units: Vec<u32>,
    used: Vec<bool>,
    bases: HashSet<usize>,
    first_free: usize,
}

impl DoubleArray {
    fn ensure(&mut self, len: usize) {
        if self.units.len() < len {
            self.units.resize(len, 0);
            self.used.resize(len, false);
        }
    }

    /// Places the children of `node`, whose unit sits at `pos` (its label already set).
    fn place(&mut self, nodes: &[Node], node: usize, pos: usize) {
        let n = &nodes[node];
        let mut labels: Vec<u8> = n.children.keys().copied().collect();
        if n.value.is_some() {
            labels.insert(0, 0);
        }
        if labels.is_empty() {
            return;
        }
        while self.first_free < self.used.len() && self.used[self.first_free] {
            self.first_free += 1;
        }
        // Every base's whole block of 256 slots must exist, so that a lookup of any byte
        // stays inside the array.
        let mut base = (self.first_free ^ labels[0] as usize).max(1);
        loop {
            self.ensure((base | 0xFF) + 1);
            let free = !self.bases.contains(&base)
                && labels.iter().all(|&c| {
                    let p = base ^ c as usize;
                    p != 0 && !self.used[p]
                });
            if free {
                break;
            }
            base += 1;
        }
        self.bases.insert(base);
        let offset = (pos ^ base) as u32;
        assert!(
            offset < 1 << 21,
            "charsmap too large for a plain double array"
        );
        self.units[pos] |= offset << 10;
        if let Some(v) = n.value {
            self.units[pos] |= 1 << 8;
            self.units[base] = (1 << 31) | v;
        }
        for &c in &labels {
            self.used[base ^ c as usize] = true;
        }
        for (&c, &child) in &n.children {
            let p = base ^ c as usize;
            self.units[p] = c as u32;
            self.place(nodes, child, p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::normalizers::Precompiled;

    #[test]
    fn every_entry_is_found_and_nothing_else() {
        let map: Vec<(char, String)> = vec![
            ('\t', " ".into()),
            ('\u{00A0}', " ".into()),
            ('\u{FB01}', "fi".into()),
            ('\u{200B}', " ".into()),
            ('\u{0001}', String::new()),
            ('\u{FF21}', "A".into()),
            ('\u{1D400}', "A".into()),
            ('\u{09DF}', "\u{09AF}\u{09BC}".into()),
        ];
        let blob = build(&map);
        let p = Precompiled::from(&blob).expect("parses");
        for (c, rep) in &map {
            assert_eq!(p.transform(&c.to_string()), Some(rep.as_str()), "{c:?}");
        }
        for c in [
            'a',
            'é',
            'ب',
            '\u{FF22}',
            '\u{1D401}',
            '\u{200C}',
            'ÿ',
            '\u{10FFFF}',
        ] {
            assert_eq!(p.transform(&c.to_string()), None, "{c:?}");
        }
        assert_eq!(p.normalize_string("a\u{FB01}\tb\u{1}"), "afi b");
    }
}
