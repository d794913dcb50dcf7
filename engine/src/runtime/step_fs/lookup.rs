//! Looking up a guest's path: component by component from the directory
//! it is relative to, following symbolic links, never leaving that
//! directory.

use std::collections::VecDeque;

use super::{DirRef, Errno, Found, Located, NAME_MAX, NodeKind, Outcome, SYMLINKS_MAX, StepFs};

impl StepFs {
    /// Entry `name` of directory `dir`, if there is one.
    pub(super) fn lookup(&self, dir: DirRef, name: &str) -> Outcome<Option<Found>> {
        Ok(match dir {
            DirRef::In => self.inputs.binary_search_by(|(input, _)| input.as_str().cmp(name)).ok().map(Found::Input),
            DirRef::Out(node) => match &self.nodes[node].kind {
                NodeKind::Dir(children) => children.get(name).map(|child| match self.nodes[*child].kind {
                    NodeKind::Dir(_) => Found::Dir(DirRef::Out(*child)),
                    _ => Found::Node(*child),
                }),
                _ => return Err(Errno::Notdir),
            },
        })
    }

    /// The entry `path` names from the directory open at `fd`.
    pub(super) fn find(&self, fd: u32, path: &str, follow: bool) -> Outcome<Found> {
        let located = self.locate_following(fd, path, follow)?;
        let found = match &located.name {
            None => Found::Dir(located.parent),
            Some(name) => self.lookup(located.parent, name)?.ok_or(Errno::Noent)?,
        };
        if located.trailing_slash && !matches!(found, Found::Dir(_)) {
            return Err(Errno::Notdir);
        }
        Ok(found)
    }

    /// Looks up all but the last component of `path` from the directory
    /// open at `fd`, following symbolic links on the way.
    pub(super) fn locate(&self, fd: u32, path: &str) -> Outcome<Located> {
        self.locate_following(fd, path, false)
    }

    /// [`locate`](Self::locate), following a link in the last component
    /// too when `follow` (what remains then names no link).
    ///
    /// The lookup stays beneath the directory it starts from: `..` there,
    /// an absolute path, or a link that leads out, is `EPERM`, as
    /// wasmtime-wasi has it.
    pub(super) fn locate_following(&self, fd: u32, path: &str, follow: bool) -> Outcome<Located> {
        let start = self.dir_of(fd)?;
        if path.is_empty() {
            return Err(Errno::Noent);
        }
        let mut pending = components(path)?;
        let mut trailing_slash = path.ends_with('/');
        let mut stack = vec![start];
        let mut links = 0;
        while let Some(component) = pending.pop_front() {
            let last = pending.is_empty();
            let here = *stack.last().expect("never empty");
            match component.as_str() {
                "." if last => return Ok(Located { parent: here, name: None, trailing_slash: true }),
                "." => {}
                ".." => {
                    if stack.len() == 1 {
                        return Err(Errno::Perm);
                    }
                    stack.pop();
                    if last {
                        return Ok(Located {
                            parent: *stack.last().expect("never empty"),
                            name: None,
                            trailing_slash: true,
                        });
                    }
                }
                name => {
                    let found = self.lookup(here, name)?;
                    let target = match found {
                        Some(Found::Node(node)) => match &self.nodes[node].kind {
                            NodeKind::Symlink(target) if !last || follow || trailing_slash => Some(target.clone()),
                            _ => None,
                        },
                        _ => None,
                    };
                    if let Some(target) = target {
                        links += 1;
                        if links > SYMLINKS_MAX {
                            return Err(Errno::Loop);
                        }
                        if target.starts_with('/') {
                            return Err(Errno::Perm);
                        }
                        let mut expanded = components(&target)?;
                        if last {
                            trailing_slash = trailing_slash || target.ends_with('/');
                        }
                        expanded.extend(pending);
                        pending = expanded;
                        continue;
                    }
                    if last {
                        return Ok(Located { parent: here, name: Some(name.to_owned()), trailing_slash });
                    }
                    match found {
                        Some(Found::Dir(dir)) => stack.push(dir),
                        Some(_) => return Err(Errno::Notdir),
                        None => return Err(Errno::Noent),
                    }
                }
            }
        }
        // Only `/`s: the start directory itself.
        Ok(Located { parent: start, name: None, trailing_slash: true })
    }
}

/// The components of `path`: `/` separated, empty ones dropped; an
/// absolute path (`EPERM`) or a name too long is refused.
fn components(path: &str) -> Outcome<VecDeque<String>> {
    if path.starts_with('/') {
        return Err(Errno::Perm);
    }
    let mut parts = VecDeque::new();
    for part in path.split('/').filter(|part| !part.is_empty()) {
        if part.len() > NAME_MAX {
            return Err(Errno::Nametoolong);
        }
        if part.contains('\0') {
            return Err(Errno::Ilseq);
        }
        parts.push_back(part.to_owned());
    }
    Ok(parts)
}

/// The directory and name an entry is made or removed at: a name, in `/out`.
pub(super) fn writable_target(located: &Located) -> Outcome<(DirRef, String)> {
    if located.parent == DirRef::In {
        return Err(Errno::Perm);
    }
    match &located.name {
        Some(name) => Ok((located.parent, name.clone())),
        None => Err(Errno::Exist),
    }
}
