//! Docker's lookup of an object the user names: an exact id, then an exact
//! name, then a unique id prefix. One rule for every kind of object.

use super::{Network, Node, Payload, PayloadKind, Service, Task};

/// An object users can name.
pub trait Named {
    /// What users call the kind in messages: `node`, `network`...
    const WHAT: &'static str;
    fn id(&self) -> &str;
    /// Its name, for the kinds that have one (a node's is its hostname).
    fn name(&self) -> Option<&str>;
}

/// Why a name did not name exactly one object.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LookupError {
    #[error("{kind} {name} not found")]
    NotFound { kind: &'static str, name: String },
    #[error("{kind} {name} is ambiguous ({matches} match); use the full id")]
    Ambiguous {
        kind: &'static str,
        name: String,
        matches: usize,
    },
}

/// The one object `wanted` names among `items`.
pub fn find<'a, T: Named>(items: &'a [T], wanted: &str) -> Result<&'a T, LookupError> {
    if let Some(found) = items.iter().find(|o| o.id() == wanted) {
        return Ok(found);
    }
    let named: Vec<&T> = items.iter().filter(|o| o.name() == Some(wanted)).collect();
    let candidates = if named.is_empty() && !wanted.is_empty() {
        items
            .iter()
            .filter(|o| o.id().starts_with(wanted))
            .collect()
    } else {
        named
    };
    match candidates.as_slice() {
        [one] => Ok(one),
        [] => Err(LookupError::NotFound {
            kind: T::WHAT,
            name: wanted.to_string(),
        }),
        many => Err(LookupError::Ambiguous {
            kind: T::WHAT,
            name: wanted.to_string(),
            matches: many.len(),
        }),
    }
}

impl Named for Node {
    const WHAT: &'static str = "node";
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.hostname)
    }
}

impl<K: PayloadKind> Named for Payload<K> {
    const WHAT: &'static str = K::WHAT;
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Named for Network {
    const WHAT: &'static str = "network";
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.name)
    }
}

impl Named for Service {
    const WHAT: &'static str = "service";
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        Some(&self.spec.name)
    }
}

impl Named for Task {
    const WHAT: &'static str = "task";
    fn id(&self) -> &str {
        &self.id
    }
    fn name(&self) -> Option<&str> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Thing(&'static str, Option<&'static str>);

    impl Named for Thing {
        const WHAT: &'static str = "thing";
        fn id(&self) -> &str {
            self.0
        }
        fn name(&self) -> Option<&str> {
            self.1
        }
    }

    #[test]
    fn an_exact_id_then_an_exact_name_then_a_unique_prefix() {
        let things = [
            Thing("abc123", Some("web")),
            Thing("abd456", Some("abc123x")),
        ];
        assert_eq!(find(&things, "abc123").unwrap().1, Some("web"));
        assert_eq!(find(&things, "abc123x").unwrap().0, "abd456");
        assert_eq!(find(&things, "abd").unwrap().1, Some("abc123x"));
        assert_eq!(
            find(&things, "ab").err(),
            Some(LookupError::Ambiguous {
                kind: "thing",
                name: "ab".into(),
                matches: 2
            })
        );
        let missing = find(&things, "db").err().unwrap();
        assert_eq!(missing.to_string(), "thing db not found");
        assert!(find(&things, "").is_err());
    }

    #[test]
    fn two_objects_with_one_name_are_ambiguous() {
        let things = [Thing("a1", Some("h1")), Thing("b2", Some("h1"))];
        assert!(matches!(
            find(&things, "h1"),
            Err(LookupError::Ambiguous { matches: 2, .. })
        ));
        assert_eq!(find(&things, "b2").unwrap().0, "b2");
        let nameless = [Thing("t1", None)];
        assert!(find(&nameless, "t").is_ok());
    }
}
