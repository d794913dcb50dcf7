//! Directories of `/out`: listing, making and removing entries, links and
//! renames (`/in` refuses every change).

use std::collections::BTreeMap;

use super::lookup::writable_target;
use super::{
    DIRENT_BYTES, DirEntry, DirRef, Errno, Found, Node, NodeId, NodeKind, OUT_INODES, Outcome, StepFs, filetype,
    input_inode, now_ns,
};

impl StepFs {
    /// The entries of the directory open at `fd`, from the `cookie`-th on
    /// (`.` and `..` first), as many as fill `budget` bytes of `dirent`s
    /// and names (the last may overflow it), so that listing a large
    /// directory in turns costs each turn only what it returns.
    pub(crate) fn read_dir(&self, fd: u32, cookie: u64, budget: usize) -> Outcome<Vec<DirEntry>> {
        let dir = self.dir_of(fd).map_err(|_| Errno::Badf)?;
        let skip = usize::try_from(cookie).map_err(|_| Errno::Inval)?;
        let dot = |name: &str, inode| DirEntry { name: name.to_owned(), inode, filetype: filetype::DIRECTORY };
        let dots = match dir {
            DirRef::In => [dot(".", 1), dot("..", 1)],
            DirRef::Out(node) => [dot(".", OUT_INODES + node as u64), dot("..", OUT_INODES + node as u64)],
        };
        let entries: Box<dyn Iterator<Item = DirEntry>> = match dir {
            DirRef::In => Box::new(self.inputs.iter().enumerate().map(|(index, (name, _))| DirEntry {
                name: name.clone(),
                inode: input_inode(index),
                filetype: filetype::REGULAR_FILE,
            })),
            DirRef::Out(node) => {
                let NodeKind::Dir(children) = &self.nodes[node].kind else { return Err(Errno::Notdir) };
                Box::new(children.iter().map(|(name, child)| DirEntry {
                    name: name.clone(),
                    inode: OUT_INODES + *child as u64,
                    filetype: self.stat_found(Found::Node(*child)).filetype,
                }))
            }
        };
        let mut filled = 0;
        Ok(dots
            .into_iter()
            .chain(entries)
            .skip(skip)
            .take_while(|entry| {
                let more = filled < budget;
                filled += DIRENT_BYTES + entry.name.len();
                more
            })
            .collect())
    }

    pub(crate) fn create_dir(&mut self, fd: u32, path: &str) -> Outcome<()> {
        let located = self.locate(fd, path)?;
        let (parent, name) = writable_target(&located)?;
        if self.lookup(parent, &name)?.is_some() {
            return Err(Errno::Exist);
        }
        self.link_new(parent, name, NodeKind::Dir(BTreeMap::new()))?;
        Ok(())
    }

    pub(crate) fn remove_dir(&mut self, fd: u32, path: &str) -> Outcome<()> {
        let located = self.locate(fd, path)?;
        let Some(name) = located.name.clone() else {
            return Err(if located.parent == DirRef::In { Errno::Perm } else { Errno::Inval });
        };
        let (parent, _) = writable_target(&located)?;
        let node = match self.lookup(parent, &name)?.ok_or(Errno::Noent)? {
            Found::Node(node) | Found::Dir(DirRef::Out(node)) => node,
            _ => return Err(Errno::Perm),
        };
        match &self.nodes[node].kind {
            NodeKind::Dir(children) if children.is_empty() => {}
            NodeKind::Dir(_) => return Err(Errno::Notempty),
            _ => return Err(Errno::Notdir),
        }
        self.unlink_name(parent, &name);
        Ok(())
    }

    pub(crate) fn unlink_file(&mut self, fd: u32, path: &str) -> Outcome<()> {
        let located = self.locate(fd, path)?;
        let (parent, name) = writable_target(&located)?;
        match self.lookup(parent, &name)?.ok_or(Errno::Noent)? {
            Found::Node(node) if !matches!(self.nodes[node].kind, NodeKind::Dir(_)) => {
                if located.trailing_slash {
                    return Err(Errno::Notdir);
                }
            }
            Found::Node(_) | Found::Dir(_) => return Err(Errno::Isdir),
            Found::Input(_) => return Err(Errno::Perm),
        }
        self.unlink_name(parent, &name);
        Ok(())
    }

    pub(crate) fn symlink(&mut self, target: &str, fd: u32, path: &str) -> Outcome<()> {
        let located = self.locate(fd, path)?;
        let (parent, name) = writable_target(&located)?;
        if self.lookup(parent, &name)?.is_some() {
            return Err(Errno::Exist);
        }
        if target.is_empty() {
            return Err(Errno::Noent);
        }
        self.link_new(parent, name, NodeKind::Symlink(target.to_owned()))?;
        Ok(())
    }

    pub(crate) fn read_link(&self, fd: u32, path: &str) -> Outcome<String> {
        match self.find(fd, path, false)? {
            Found::Node(node) => match &self.nodes[node].kind {
                NodeKind::Symlink(target) => Ok(target.clone()),
                _ => Err(Errno::Inval),
            },
            _ => Err(Errno::Inval),
        }
    }

    /// Hard links are not supported; the error says which side is wrong.
    pub(crate) fn link(&self, from_fd: u32, from: &str, to_fd: u32, to: &str) -> Outcome<()> {
        self.find(from_fd, from, false)?;
        let (from_dir, to_dir) = (self.dir_of(from_fd)?, self.dir_of(to_fd)?);
        let located = self.locate(to_fd, to)?;
        writable_target(&located)?;
        if matches!(from_dir, DirRef::In) != matches!(to_dir, DirRef::In) {
            return Err(Errno::Xdev);
        }
        Err(Errno::Notsup)
    }

    pub(crate) fn rename(&mut self, from_fd: u32, from: &str, to_fd: u32, to: &str) -> Outcome<()> {
        let source = self.locate(from_fd, from)?;
        let target = self.locate(to_fd, to)?;
        if source.parent == DirRef::In || target.parent == DirRef::In {
            return Err(if source.parent != target.parent { Errno::Xdev } else { Errno::Perm });
        }
        let (from_parent, from_name) = writable_target(&source)?;
        let (to_parent, to_name) = writable_target(&target)?;
        let moving = match self.lookup(from_parent, &from_name)?.ok_or(Errno::Noent)? {
            Found::Node(node) | Found::Dir(DirRef::Out(node)) => node,
            _ => return Err(Errno::Perm),
        };
        let moving_dir = matches!(self.nodes[moving].kind, NodeKind::Dir(_));
        if (source.trailing_slash || target.trailing_slash) && !moving_dir {
            return Err(Errno::Notdir);
        }
        let DirRef::Out(to_node) = to_parent else { return Err(Errno::Perm) };
        if moving_dir && self.is_within(to_node, moving) {
            return Err(Errno::Inval);
        }
        if let Some(Found::Node(replaced) | Found::Dir(DirRef::Out(replaced))) = self.lookup(to_parent, &to_name)? {
            if replaced == moving {
                return Ok(());
            }
            match (&self.nodes[replaced].kind, moving_dir) {
                (NodeKind::Dir(children), true) if children.is_empty() => {}
                (NodeKind::Dir(_), true) => return Err(Errno::Notempty),
                (NodeKind::Dir(_), false) => return Err(Errno::Isdir),
                (_, true) => return Err(Errno::Notdir),
                (_, false) => {}
            }
            self.unlink_name(to_parent, &to_name);
        }
        let DirRef::Out(from_node) = from_parent else { return Err(Errno::Perm) };
        self.children_mut(from_node).remove(&from_name);
        self.children_mut(to_node).insert(to_name, moving);
        let now = now_ns();
        self.nodes[from_node].times[1] = now;
        self.nodes[to_node].times[1] = now;
        Ok(())
    }

    /// Whether directory `node` is `ancestor` or beneath it.
    fn is_within(&self, node: NodeId, ancestor: NodeId) -> bool {
        if node == ancestor {
            return true;
        }
        let NodeKind::Dir(children) = &self.nodes[ancestor].kind else { return false };
        children
            .values()
            .any(|child| matches!(self.nodes[*child].kind, NodeKind::Dir(_)) && self.is_within(node, *child))
    }

    fn children_mut(&mut self, dir: NodeId) -> &mut BTreeMap<String, NodeId> {
        match &mut self.nodes[dir].kind {
            NodeKind::Dir(children) => children,
            _ => unreachable!("only directories are parents"),
        }
    }

    /// A new entry `name` in directory `parent` of `/out`, counted against `limits.files`.
    pub(super) fn link_new(&mut self, parent: DirRef, name: String, kind: NodeKind) -> Outcome<NodeId> {
        let DirRef::Out(parent) = parent else { return Err(Errno::Perm) };
        self.charge_entry()?;
        let now = now_ns();
        self.nodes.push(Node { kind, linked: true, times: [now; 3] });
        let node = self.nodes.len() - 1;
        self.children_mut(parent).insert(name, node);
        self.nodes[parent].times[1] = now;
        Ok(node)
    }

    /// Removes entry `name` of `parent` (and, for a directory, nothing
    /// beneath it: only empty ones are removed), uncounting it.
    fn unlink_name(&mut self, parent: DirRef, name: &str) {
        let DirRef::Out(parent) = parent else { return };
        let Some(node) = self.children_mut(parent).remove(name) else { return };
        self.nodes[parent].times[1] = now_ns();
        self.files -= 1;
        self.nodes[node].linked = false;
        if let NodeKind::File { size, .. } = &self.nodes[node].kind {
            self.bytes -= *size;
        }
    }
}
