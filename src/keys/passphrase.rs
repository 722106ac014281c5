//! Where a passphrase comes from: a file named by `PXFS_PASSPHRASE_FILE` or the config's
//! `[keys] passphrase_file` (unattended mounts), a prompt without echo on the terminal, or
//! one line of stdin when stdin is not a terminal. Never argv. The passphrase is held in
//! wiped memory and never logged.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

use super::KeyError;
use crate::config::KeysConfig;

pub const PASSPHRASE_FILE_ENV: &str = "PXFS_PASSPHRASE_FILE";

/// Fewest bytes a new passphrase may have (existing ones are taken as they are).
pub const MIN_NEW_PASSPHRASE: usize = 8;

/// A passphrase in memory that is wiped when dropped.
pub type Passphrase = Zeroizing<String>;

/// How a passphrase is obtained, only when one is needed. `Debug` never shows it.
#[derive(Clone)]
pub enum PassphraseSource {
    /// No passphrase on this machine.
    None,
    /// The first line of this file.
    File(PathBuf),
    /// The terminal (no echo), or a line of stdin when it is not a terminal.
    Ask,
    /// Given by the caller (library use, tests).
    Given(Passphrase),
}

impl std::fmt::Debug for PassphraseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PassphraseSource::None => f.write_str("None"),
            PassphraseSource::File(p) => f.debug_tuple("File").field(p).finish(),
            PassphraseSource::Ask => f.write_str("Ask"),
            PassphraseSource::Given(_) => f.write_str("Given(..)"),
        }
    }
}

impl PassphraseSource {
    /// `PXFS_PASSPHRASE_FILE`, else `[keys] passphrase_file`, else asking when `ask` is set.
    pub fn configured(cfg: &KeysConfig, ask: bool) -> PassphraseSource {
        if let Some(p) = std::env::var_os(PASSPHRASE_FILE_ENV).filter(|p| !p.is_empty()) {
            return PassphraseSource::File(PathBuf::from(p));
        }
        if let Some(p) = &cfg.passphrase_file {
            return PassphraseSource::File(p.clone());
        }
        if ask {
            PassphraseSource::Ask
        } else {
            PassphraseSource::None
        }
    }

    /// Whether a passphrase can be had without asking anyone.
    pub fn is_unattended(&self) -> bool {
        matches!(self, PassphraseSource::File(_) | PassphraseSource::Given(_))
    }

    /// The passphrase, or `None` when this source has none. `prompt` is what the terminal
    /// shows.
    pub fn get(&self, prompt: &str) -> Result<Option<Passphrase>, KeyError> {
        match self {
            PassphraseSource::None => Ok(None),
            PassphraseSource::File(path) => read_file(path).map(Some),
            PassphraseSource::Ask => ask(prompt).map(Some),
            PassphraseSource::Given(p) => Ok(Some(p.clone())),
        }
    }

    /// Where the passphrase comes from, for messages (never the passphrase).
    pub fn describe(&self) -> String {
        match self {
            PassphraseSource::None => "no passphrase".into(),
            PassphraseSource::File(p) => format!("the passphrase in {}", p.display()),
            PassphraseSource::Ask => "the passphrase typed".into(),
            PassphraseSource::Given(_) => "the passphrase given".into(),
        }
    }
}

fn read_file(path: &Path) -> Result<Passphrase, KeyError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        KeyError::Passphrase(format!(
            "cannot read the passphrase file {}: {e}",
            path.display()
        ))
    })?);
    let line = first_line(&text);
    if line.is_empty() {
        return Err(KeyError::Passphrase(format!(
            "the passphrase file {} is empty",
            path.display()
        )));
    }
    Ok(line)
}

/// The first line without its line ending: the passphrase's bytes as typed.
fn first_line(text: &str) -> Passphrase {
    let line = text.split('\n').next().unwrap_or("");
    Zeroizing::new(line.strip_suffix('\r').unwrap_or(line).to_owned())
}

/// Asks on the terminal without echo; reads one line of stdin when stdin is not a terminal
/// (scripts, tests). Stdin is read line by line, so a command that needs two passphrases
/// takes them as two lines.
pub fn ask(prompt: &str) -> Result<Passphrase, KeyError> {
    ask_secret(prompt, "passphrase")
}

/// Like [`ask`], for any one-line secret (`what` names it in errors).
pub fn ask_secret(prompt: &str, what: &str) -> Result<Passphrase, KeyError> {
    if std::io::stdin().is_terminal() {
        let typed = Zeroizing::new(
            rpassword::prompt_password(prompt)
                .map_err(|e| KeyError::Passphrase(format!("cannot read the {what}: {e}")))?,
        );
        return Ok(first_line(&typed));
    }
    let mut line = Zeroizing::new(String::new());
    let n = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| KeyError::Passphrase(format!("cannot read the {what} from stdin: {e}")))?;
    if n == 0 {
        return Err(KeyError::Passphrase(format!(
            "no {what} on stdin (it is not a terminal and has ended)"
        )));
    }
    Ok(first_line(&line))
}

/// A new passphrase: asked twice on a terminal (they must match), once from stdin.
/// Refuses one shorter than [`MIN_NEW_PASSPHRASE`] bytes.
pub fn ask_new() -> Result<Passphrase, KeyError> {
    let p = ask("New passphrase: ")?;
    if p.len() < MIN_NEW_PASSPHRASE {
        return Err(KeyError::Passphrase(format!(
            "the new passphrase is too short: at least {MIN_NEW_PASSPHRASE} characters"
        )));
    }
    if std::io::stdin().is_terminal() {
        let again = ask("Repeat the new passphrase: ")?;
        if *again != *p {
            return Err(KeyError::Passphrase(
                "the two passphrases differ; nothing was changed".into(),
            ));
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_line_is_the_passphrase_without_its_line_ending() {
        assert_eq!(first_line("secret words\n").as_str(), "secret words");
        assert_eq!(first_line("secret words\r\nmore").as_str(), "secret words");
        assert_eq!(first_line("  spaces kept  ").as_str(), "  spaces kept  ");
    }

    #[test]
    fn a_passphrase_file_is_read_and_an_empty_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("pp");
        std::fs::write(&f, "correct horse\n").unwrap();
        let src = PassphraseSource::File(f.clone());
        assert_eq!(src.get("").unwrap().unwrap().as_str(), "correct horse");
        std::fs::write(&f, "\n").unwrap();
        let err = src.get("").unwrap_err().to_string();
        assert!(err.contains("is empty"), "{err}");
    }
}
