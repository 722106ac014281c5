//! The usage document (`pxfs/usage/1`) published under an sNFT's BTNS key.
