//! On-disk chunk cache for reads of uploaded content, with a size limit and LRU eviction.
