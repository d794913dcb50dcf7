//! Objects crossing between stores (a team's shared cache): what is sent is
//! read back from the store as stored; what is received is stored only if
//! its bytes hash to the digest it was asked for.

use std::io::Read;
use std::path::Path;

use super::tree::Tree;
use super::{Store, hash_file, split};
use crate::{Digest, Error, OutputKind, Result};

impl Store {
    /// The bytes of object `digest` as stored: a file's content, or a
    /// directory's tree record.
    pub(crate) fn object_reader(&self, kind: OutputKind, digest: &Digest) -> Result<Box<dyn Read + Send>> {
        match kind {
            OutputKind::File => Ok(Box::new(self.open_file(digest)?)),
            OutputKind::Dir => Ok(Box::new(std::io::Cursor::new(self.read_verified(&self.inner.trees, digest)?))),
        }
    }

    /// Stores the file read from `source` if its bytes hash to `expected`;
    /// `Ok(Err(found))` (nothing stored) when they hash to `found` instead.
    pub(crate) fn receive_file(&self, expected: &Digest, source: &mut dyn Read) -> Result<Result<(), Digest>> {
        let context = || format!("receiving {expected}");
        let temp = self.temp_name("receive");
        let mut copy = self.inner.tmp.create(&temp).map_err(|e| Error::io(context())(e))?.into_std();
        let copied = std::io::copy(source, &mut copy).map_err(|e| Error::io(context())(e));
        drop(copy);
        let found = copied.and_then(|_| {
            let file = self.inner.tmp.open(&temp).map_err(|e| Error::io(context())(e))?.into_std();
            hash_file(&file).map_err(|e| Error::io(context())(e))
        });
        match found {
            Ok(found) if found == *expected => {
                self.adopt_file(&self.inner.tmp, Path::new(&temp), super::ingest::IfKnown::Remove, &context)?;
                Ok(Ok(()))
            }
            other => {
                let _ = self.inner.tmp.remove_file(&temp);
                other.map(Err)
            }
        }
    }

    /// The directory a received tree record describes, if the record hashes
    /// to `expected` and decodes; else why not. Nothing is stored: the
    /// caller fetches the entries first, then [`publish_tree_record`](Self::publish_tree_record).
    pub(crate) fn check_tree(expected: &Digest, bytes: &[u8]) -> Result<Tree, String> {
        let found = Digest::of(bytes);
        if found != *expected {
            return Err(format!("its tree record hashes to {found}"));
        }
        Tree::decode(bytes).map_err(|why| format!("its tree record does not decode: {why}"))
    }

    /// Stores a tree record [`check_tree`](Self::check_tree) accepted,
    /// once every entry it names is in the store.
    pub(crate) fn publish_tree_record(&self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        self.publish_bytes(&self.inner.trees, digest, bytes, true)
    }

    /// Whether object `digest` of `kind` is in the store (without reading it).
    pub(crate) fn has_object(&self, kind: OutputKind, digest: &Digest) -> bool {
        let (fan, rest) = split(digest);
        super::has_entry(self.kind_dir(kind), &Path::new(&fan).join(rest))
    }
}
