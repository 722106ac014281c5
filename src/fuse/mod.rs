//! FUSE adapter (fuser): a thin translation of kernel requests to `fs` calls.
