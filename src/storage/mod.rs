//! Storage client: the BTFS/Kubo HTTP RPC subset pxfs uses. The only code that speaks to the node.
