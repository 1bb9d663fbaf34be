//! Key paths (`services.web.ports[2]`) for errors, and the part of a path
//! below its subject (`ports[2]` of service `web`) for warnings.

use std::fmt;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPath {
    text: String,
    /// Where the part below the subject starts in `text`.
    relative_from: usize,
}

impl KeyPath {
    pub fn root() -> KeyPath {
        KeyPath::default()
    }

    /// The path of `key` below this one.
    pub fn key(&self, key: &str) -> KeyPath {
        let mut text = self.text.clone();
        if !text.is_empty() {
            text.push('.');
        }
        text.push_str(key);
        KeyPath {
            text,
            relative_from: self.relative_from,
        }
    }

    /// The path of the `index`th item of this list.
    pub fn index(&self, index: usize) -> KeyPath {
        KeyPath {
            text: format!("{}[{index}]", self.text),
            relative_from: self.relative_from,
        }
    }

    /// This path, as the subject that warnings below it are about.
    pub fn subject(&self) -> KeyPath {
        KeyPath {
            text: self.text.clone(),
            relative_from: self.text.len(),
        }
    }

    /// The part of the path below the subject.
    pub fn relative(&self) -> &str {
        self.text
            .get(self.relative_from..)
            .unwrap_or_default()
            .trim_start_matches('.')
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_render_keys_and_indexes_and_their_part_below_the_subject() {
        let service = KeyPath::root().key("services").key("web").subject();
        let port = service.key("ports").index(2);
        assert_eq!(port.to_string(), "services.web.ports[2]");
        assert_eq!(port.relative(), "ports[2]");
        assert_eq!(service.key("deploy").key("mode").relative(), "deploy.mode");
        assert_eq!(KeyPath::root().key("version").relative(), "version");
    }
}
