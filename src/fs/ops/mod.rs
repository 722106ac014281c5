//! The operations the FUSE adapter (and the CLI) call: open/write/close and file
//! handles (`io`), reads (`read`), namespace operations (`namespace`, the `.snapshots`
//! view's lookup in `snapshots`), extended attributes, the status snapshot, and re-sealing
//! a tree under other keys. The top of the core: may use every
//! other part, nothing in the core uses it.

pub(in crate::fs) mod close;
pub(in crate::fs) mod io;
pub(in crate::fs) mod namespace;
pub(in crate::fs) mod overlay;
pub(in crate::fs) mod read;
pub mod reseal;
pub(in crate::fs) mod seek;
pub(in crate::fs) mod snapshots;
pub mod status;
pub(in crate::fs) mod xattr;
