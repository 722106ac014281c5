//! On-node format v1 (`pxfs/dir/1` manifests, `pxfs/usage/1` documents): what pxfs wrote
//! before format v2. Still read (a v1 tree mounts and its next commit rewrites it as v2,
//! docs/FORMAT.md §10) and measured by the oracle; never written by the core.

pub mod manifest;
pub mod usage;
