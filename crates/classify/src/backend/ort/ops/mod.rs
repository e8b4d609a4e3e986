//! triage's own ONNX Runtime operators: on x86-64 the bf16 attention ([`attention`]) and the
//! feed-forward block's three ([`ffn`]); elsewhere none, and the int8 graph keeps ONNX Runtime's
//! nodes.

#[cfg(target_arch = "x86_64")]
pub(crate) mod attention;
#[cfg(target_arch = "x86_64")]
pub(crate) mod ffn;

#[cfg(not(target_arch = "x86_64"))]
pub(crate) mod attention {
    pub(crate) fn available() -> bool {
        false
    }
}
#[cfg(not(target_arch = "x86_64"))]
pub(crate) mod ffn {
    pub(crate) fn available() -> bool {
        false
    }
}

/// The domain of triage's own operators ([`operators`]).
pub(crate) const DOMAIN: &str = "triage";

/// triage's own operators, for a session's builder: on x86-64 the bf16 attention
/// ([`crate::backend::ort::ops::attention`]) and the feed-forward block's three ([`crate::backend::ort::ops::ffn`]); elsewhere none
/// (the graphs then keep ONNX Runtime's nodes).
pub(crate) fn operators() -> ort::Result<ort::operator::OperatorDomain> {
    let domain = ort::operator::OperatorDomain::new(DOMAIN)?;
    #[cfg(target_arch = "x86_64")]
    let domain = domain
        .add(crate::backend::ort::ops::attention::AttentionOp)?
        .add(crate::backend::ort::ops::ffn::AttnNorm)?
        .add(crate::backend::ort::ops::ffn::FfnActivation)?
        .add(crate::backend::ort::ops::ffn::FfnOutput)?;
    Ok(domain)
}

/// `Err(what)` unless `ok`: the operators check what their unsafe kernels need and answer ONNX
/// Runtime with an error, never a panic.
pub(crate) fn check(ok: bool, what: &str) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("precondition failed: {what}"))
    }
}

/// Runs an operator's work, turning a panic into an error: ONNX Runtime calls kernels through
/// an `extern "system"` callback, out of which a panic cannot unwind (the process would
/// abort); the session's run then fails with the operator's name and the panic's message.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
pub(crate) fn guarded(op: &str, f: impl FnOnce() -> ort::Result<()>) -> ort::Result<()> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        Err(ort::Error::new(format!("triage.{op}: {message}")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_in_an_operator_becomes_an_error() {
        let e = guarded("Test", || panic!("index out of bounds")).unwrap_err();
        assert!(
            e.to_string().contains("triage.Test: index out of bounds"),
            "{e}"
        );
        let e = guarded("Test", || Err(ort::Error::new("bad input"))).unwrap_err();
        assert!(e.to_string().contains("bad input"), "{e}");
        assert!(guarded("Test", || Ok(())).is_ok());
        assert_eq!(
            check(false, "len > 0"),
            Err("precondition failed: len > 0".into())
        );
    }
}
