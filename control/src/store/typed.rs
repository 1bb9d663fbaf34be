//! Typed access to the store: every object type names its kind once
//! ([`Object::KIND`], one of the [`kind`](super::kind) constants) and its
//! id, so reads and writes never spell a kind as a string literal.

use crate::error_chain::ErrorChain;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Command, Objects, StoreError, Versioned};

/// A type the store keeps, all of one kind, keyed by [`Object::id`].
pub trait Object: Serialize + DeserializeOwned {
    /// The kind its objects are stored under.
    const KIND: &'static str;
    /// Its key within the kind.
    fn id(&self) -> &str;
}

impl Objects {
    /// Every object of `T`'s kind, ordered by id.
    pub fn all<T: Object>(&self) -> Result<Vec<T>, StoreError> {
        Ok(self
            .list_as::<T>(T::KIND)?
            .into_iter()
            .map(|(_, v)| v.value)
            .collect())
    }

    /// The object of `T`'s kind with id `id`, and its version.
    pub fn one<T: Object>(&self, id: &str) -> Result<Option<Versioned<T>>, StoreError> {
        self.get_as::<T>(T::KIND, id)
    }

    /// The version of `T`'s object `id` (0 when it does not exist, which is
    /// what a create-only write expects).
    pub fn version_of<T: Object>(&self, id: &str) -> u64 {
        self.get(T::KIND, id).map_or(0, |v| v.version)
    }
}

impl Command {
    /// Stores `value` under its kind and id; `expect_version` as in
    /// [`Command::Set`].
    pub fn put<T: Object>(value: &T, expect_version: Option<u64>) -> Result<Command, StoreError> {
        Command::set(T::KIND, value.id(), value, expect_version).map_err(|e| StoreError::Decode {
            kind: T::KIND.to_string(),
            id: value.id().to_string(),
            ty: std::any::type_name::<T>(),
            detail: e.chain().to_string(),
        })
    }

    /// Removes `T`'s object `id`.
    pub fn remove<T: Object>(id: &str, expect_version: Option<u64>) -> Command {
        Command::delete(T::KIND, id, expect_version)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::store::objects::Changes;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        id: String,
        n: u32,
    }

    impl Object for Thing {
        const KIND: &'static str = "thing";
        fn id(&self) -> &str {
            &self.id
        }
    }

    #[test]
    fn typed_writes_land_under_the_kind_and_id() {
        let mut objects = Objects::default();
        let thing = Thing {
            id: "a".into(),
            n: 1,
        };
        let mut changes = Changes::default();
        let put = Command::put(&thing, Some(0)).unwrap();
        assert!(changes.stage(&objects, &put, 4).is_ok());
        objects.apply(&changes, Some(4));
        assert_eq!(objects.all::<Thing>().unwrap(), vec![thing]);
        assert_eq!(objects.version_of::<Thing>("a"), 4);
        assert_eq!(objects.version_of::<Thing>("b"), 0);
        assert_eq!(objects.one::<Thing>("a").unwrap().unwrap().value.n, 1);
        assert_eq!(
            Command::remove::<Thing>("a", None),
            Command::delete("thing", "a", None)
        );
    }
}
