//! `Stores`: which [`ContentStore`] serves which sNFT. On PollinationX's hosted nodes each
//! sNFT has its own endpoint and login, so its uploads and reads go through its own store;
//! elsewhere every sNFT shares one. Shared by the core (reads, commits) and the uploader.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::format::TokenId;
use crate::fs::store::ContentStore;

pub(crate) struct Stores {
    shared: Arc<dyn ContentStore>,
    by_token: Mutex<HashMap<TokenId, Arc<dyn ContentStore>>>,
}

impl Stores {
    pub fn new(shared: Arc<dyn ContentStore>) -> Stores {
        Stores {
            shared,
            by_token: Mutex::new(HashMap::new()),
        }
    }

    /// The store for what belongs to sNFT `token` (`None`: to no sNFT in particular).
    pub fn of(&self, token: Option<TokenId>) -> Arc<dyn ContentStore> {
        let Some(token) = token else {
            return self.shared.clone();
        };
        let mut stores = self.by_token.lock().unwrap_or_else(|e| e.into_inner());
        stores
            .entry(token)
            .or_insert_with(|| {
                self.shared
                    .for_token(token)
                    .unwrap_or_else(|| self.shared.clone())
            })
            .clone()
    }
}
