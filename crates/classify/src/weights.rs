//! Weights read from `*.safetensors` files one tensor at a time, with ordinary reads.
//!
//! candle's own loader memory-maps the files. Every page of a mapped file that a copy touches
//! counts in the process's resident memory until the map is dropped, and the classifier's
//! variable builder lives through the whole load (the head's tensors are read last): the
//! encoder's weights were resident twice, as the map's pages and as their copies. For the
//! default model in int8 that was about 470 of the 1,510 MiB peak. Read into buffers, only the
//! copies are resident, and the file's pages stay in the kernel's cache.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use candle_core::safetensors::Load;
use candle_core::{DType, Device, Shape, Tensor};
use safetensors::tensor::{Metadata, TensorInfo, TensorView};

/// The larger headers of real checkpoints are a few hundred KiB; safetensors' own limit.
const MAX_HEADER: u64 = 100_000_000;

/// Where each tensor of a set of safetensors files lies.
pub(crate) struct SafetensorsFiles {
    files: Vec<PathBuf>,
    /// name -> (file index, absolute offset of the data, its description)
    index: HashMap<String, (usize, u64, TensorInfo)>,
}

impl SafetensorsFiles {
    /// Reads the headers of `files`. The error names the file and what is wrong with it.
    pub(crate) fn open(files: &[PathBuf]) -> std::result::Result<Self, String> {
        let mut index = HashMap::new();
        for (i, path) in files.iter().enumerate() {
            let bad = |what: String| format!("{}: {what}", path.display());
            let mut f = File::open(path).map_err(|e| bad(e.to_string()))?;
            let len = f.metadata().map_err(|e| bad(e.to_string()))?.len();
            let mut n = [0u8; 8];
            f.read_exact(&mut n).map_err(|_| {
                bad("not a safetensors file: shorter than its 8-byte header size".into())
            })?;
            let n = u64::from_le_bytes(n);
            if n > MAX_HEADER || 8 + n > len {
                return Err(bad(format!(
                    "not a safetensors file: header of {n} bytes in a file of {len}"
                )));
            }
            let mut header = vec![0u8; n as usize];
            f.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
            // safetensors' own header type, which also checks that the tensors' byte ranges
            // follow each other and fit their element types and shapes
            let header: Metadata = serde_json::from_slice(&header)
                .map_err(|e| bad(format!("safetensors header: {e}")))?;
            let data = 8 + n;
            for (name, info) in header.tensors() {
                let (start, end) = info.data_offsets;
                if start > end || data + end as u64 > len {
                    return Err(bad(format!(
                        "tensor {name}: bytes {start}..{end} of the data, which has {}",
                        len - data
                    )));
                }
                index.insert(name, (i, data + start as u64, info.clone()));
            }
        }
        Ok(SafetensorsFiles {
            files: files.to_vec(),
            index,
        })
    }

    /// Tensor `name`'s element type, shape and number of bytes.
    #[cfg(feature = "tch")]
    pub(crate) fn describe(&self, name: &str) -> Option<(safetensors::Dtype, &[usize], usize)> {
        self.index.get(name).map(|(_, _, info)| {
            let (start, end) = info.data_offsets;
            (info.dtype, &info.shape[..], end - start)
        })
    }

    /// Fills `buf` with tensor `name`'s data from its byte `start`. The error names the file.
    pub(crate) fn read_into(
        &self,
        name: &str,
        start: usize,
        buf: &mut [u8],
    ) -> std::result::Result<(), String> {
        let (i, offset, _) = self
            .index
            .get(name)
            .ok_or_else(|| format!("no tensor {name}"))?;
        let path = &self.files[*i];
        let mut read = || -> std::io::Result<()> {
            let mut f = File::open(path)?;
            f.seek(SeekFrom::Start(offset + start as u64))?;
            f.read_exact(buf)
        };
        read().map_err(|e| format!("reading {name} from {}: {e}", path.display()))
    }

    fn load(&self, name: &str, device: &Device) -> candle_core::Result<Tensor> {
        let (i, _, info) = self
            .index
            .get(name)
            .ok_or_else(|| candle_core::Error::CannotFindTensor { path: name.into() }.bt())?;
        let path: &Path = &self.files[*i];
        let (start, end) = info.data_offsets;
        // f32 (nearly every weight of a checkpoint) is read straight into the tensor's own
        // buffer: going through bytes copied the word embeddings (384 MB for the default
        // model) once more and faulted in their pages twice, a fifth of a second at each start
        if cfg!(target_endian = "little")
            && info.dtype == safetensors::Dtype::F32
            && device.is_cpu()
            && info.shape.iter().product::<usize>() * 4 == end - start
        {
            let mut values = vec![0f32; (end - start) / 4];
            // SAFETY: any bytes are a valid f32, the slice covers exactly `values`' memory
            // (4 bytes each, checked just above), and `values` is not used while it lives
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(values.as_mut_ptr().cast::<u8>(), end - start)
            };
            self.read_into(name, 0, bytes)
                .map_err(candle_core::Error::Msg)?;
            return Tensor::from_vec(values, info.shape.clone(), device);
        }
        let mut bytes = vec![0u8; end - start];
        self.read_into(name, 0, &mut bytes)
            .map_err(candle_core::Error::Msg)?;
        let view = TensorView::new(info.dtype, info.shape.clone(), &bytes).map_err(|e| {
            candle_core::Error::Msg(format!("tensor {name} in {}: {e}", path.display()))
        })?;
        view.load(device)
    }
}

impl candle_nn::var_builder::SimpleBackend for SafetensorsFiles {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let tensor = self.load(name, dev)?.to_dtype(dtype)?;
        if tensor.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: format!("shape mismatch for {name}"),
                expected: s,
                got: tensor.shape().clone(),
            }
            .bt());
        }
        Ok(tensor)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.load(name, dev)?.to_dtype(dtype)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::var_builder::SimpleBackend;

    fn write(dir: &Path, name: &str, tensors: &[(&str, Tensor)]) -> PathBuf {
        let path = dir.join(name);
        let map: HashMap<String, Tensor> = tensors
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect();
        candle_core::safetensors::save(&map, &path).unwrap();
        path
    }

    #[test]
    fn reads_every_tensor_as_candles_own_loader_does() {
        let dir = tempfile::tempdir().unwrap();
        let cpu = Device::Cpu;
        let a = Tensor::arange(0f32, 24.0, &cpu)
            .unwrap()
            .reshape((2, 3, 4))
            .unwrap();
        let b = Tensor::new(&[1.5f32, -2.25], &cpu)
            .unwrap()
            .to_dtype(DType::F16)
            .unwrap();
        let c = Tensor::new(&[7i64, 8, 9], &cpu).unwrap();
        let files = [
            write(
                dir.path(),
                "a.safetensors",
                &[("a", a.clone()), ("b", b.clone())],
            ),
            write(dir.path(), "b.safetensors", &[("c", c.clone())]),
        ];
        let st = SafetensorsFiles::open(&files).unwrap();
        // SAFETY: the files were written just above in a folder of this test's own, and nothing
        // changes them while they are mapped.
        let theirs = unsafe { candle_core::safetensors::MmapedSafetensors::multi(&files) }.unwrap();
        for name in ["a", "b", "c"] {
            let mine = st.get_unchecked(name, DType::F32, &cpu).unwrap();
            let want = theirs
                .load(name, &cpu)
                .unwrap()
                .to_dtype(DType::F32)
                .unwrap();
            assert_eq!(mine.shape(), want.shape(), "{name}");
            assert_eq!(
                mine.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                want.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                "{name}"
            );
        }
        assert_eq!(
            st.get_unchecked("b", DType::F32, &cpu)
                .unwrap()
                .to_vec1::<f32>()
                .unwrap(),
            [1.5, -2.25]
        );
        assert!(st.contains_tensor("c") && !st.contains_tensor("d"));
        let shape = st
            .get(
                (4, 6).into(),
                "a",
                candle_nn::Init::Const(0.0),
                DType::F32,
                &cpu,
            )
            .unwrap_err()
            .to_string();
        assert!(shape.contains("shape mismatch for a"), "{shape}");
        let missing = st
            .get_unchecked("d", DType::F32, &cpu)
            .unwrap_err()
            .to_string();
        assert!(missing.contains("cannot find tensor d"), "{missing}");
    }

    #[test]
    fn a_damaged_file_is_named_with_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tensor::arange(0f32, 16.0, &Device::Cpu).unwrap();
        let good = write(dir.path(), "good.safetensors", &[("t", t)]);
        let bytes = std::fs::read(&good).unwrap();

        let cut = dir.path().join("cut.safetensors");
        std::fs::write(&cut, &bytes[..bytes.len() - 4]).unwrap();
        let e = SafetensorsFiles::open(&[cut]).err().unwrap();
        assert!(e.contains("cut.safetensors: tensor t: bytes 0..64"), "{e}");

        let short = dir.path().join("short.safetensors");
        std::fs::write(&short, &bytes[..5]).unwrap();
        let e = SafetensorsFiles::open(&[short]).err().unwrap();
        assert!(
            e.contains("short.safetensors: not a safetensors file"),
            "{e}"
        );

        let json = dir.path().join("json.safetensors");
        let mut broken = bytes.clone();
        broken[8] = b'[';
        std::fs::write(&json, &broken).unwrap();
        let e = SafetensorsFiles::open(&[json]).err().unwrap();
        assert!(e.contains("json.safetensors: safetensors header"), "{e}");

        // a byte range that does not fit the tensor's shape (12 bytes for 4 f32s)
        let header = br#"{"t":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}}"#;
        let mut misfit = (header.len() as u64).to_le_bytes().to_vec();
        misfit.extend_from_slice(header);
        misfit.extend_from_slice(&[0u8; 12]);
        let path = dir.path().join("misfit.safetensors");
        std::fs::write(&path, &misfit).unwrap();
        let e = SafetensorsFiles::open(&[path]).err().unwrap();
        assert!(e.contains("misfit.safetensors: safetensors header"), "{e}");
    }
}
