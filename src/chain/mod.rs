//! Chain layer (alloy): the PxStorageNFT contract, LinkToken and Operator; reads of owned
//! tokens and their quota/sync state; `mint`, `registerBtnsKey`, `sync`; devnet deploy.
