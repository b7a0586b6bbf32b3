//! What a PCM name is made of, read from the ALSA configuration without
//! opening it.
//!
//! A device probe opens every PCM the hints list, and opening a PCM does
//! what its definition says: a `file` plugin (`type file`, also how a
//! "tee" is written) creates the file it names, or runs the command of a
//! `file "|command"`, as phase4's user (one whose output is `/dev/null`,
//! a capture device made of an `infile`, does neither). A network client allowed to probe
//! (loopback, or the token) could make phase4 run such a command every
//! 2 s. So probes look at the definition first ([`opening_runs`]) and
//! leave those PCMs unopened; choosing one as the capture device (an
//! operator's deliberate act, like configuring it) still opens it.

use alsa_sys as sys;
use std::ffi::{CStr, CString};

/// Most definitions followed for one name (a chain of slaves, the slaves
/// of a `multi`): a configuration that refers in a circle, or is deeper
/// than this, is treated as one that does something (not probed).
const MAX_DEFINITIONS: usize = 64;
/// Most configuration nodes looked at for one name (a `multi` of many
/// channels has a binding and a routing row per channel).
const MAX_NODES: usize = 4096;
/// Deepest nesting of compounds within one definition looked into: the
/// walk recurses once per level (tester u: a definition nested 1 500 deep
/// overflowed the probe thread's stack, then 256 KiB, and aborted the
/// process). Real definitions are a few levels deep.
const MAX_DEPTH: usize = 32;

/// Why opening `name` would do more than open a sound device (a phrase
/// that completes "not opened: "): `Some` when
/// a `file` plugin is anywhere in its chain (or the chain cannot be
/// followed to its end), `None` when none is, or when the name has no
/// definition (opening it fails without doing anything).
pub fn opening_runs(name: &str) -> Option<String> {
    let key = CString::new(name).ok()?;
    let mut top: *mut sys::snd_config_t = std::ptr::null_mut();
    // SAFETY: snd_config_update_ref gives a reference to the (re)loaded
    // configuration tree, released with snd_config_unref below.
    if unsafe { sys::snd_config_update_ref(&mut top) } < 0 || top.is_null() {
        return None;
    }
    let mut walk = Walk {
        top,
        definitions: 0,
        nodes: 0,
        depth: 0,
    };
    let found = walk.definition(c"pcm", &key);
    // SAFETY: `top` came from snd_config_update_ref above.
    unsafe { sys::snd_config_unref(top) };
    found
}

struct Walk {
    top: *mut sys::snd_config_t,
    definitions: usize,
    nodes: usize,
    /// Compounds of the current definition entered and not yet left.
    depth: usize,
}

impl Walk {
    /// The definition of `key` under `base` ("pcm" or "pcm_slave"), with
    /// its arguments expanded as alsa-lib does when opening it.
    fn definition(&mut self, base: &CStr, key: &CStr) -> Option<String> {
        let mut def: *mut sys::snd_config_t = std::ptr::null_mut();
        // SAFETY: `top` is a live tree; on success `def` is an expanded
        // copy that we own and delete below.
        let err = unsafe {
            sys::snd_config_search_definition(self.top, base.as_ptr(), key.as_ptr(), &mut def)
        };
        if err < 0 || def.is_null() {
            return None;
        }
        // Counted when found (a `multi`'s bindings name its own slaves,
        // which are no definitions): a circle finds one every time.
        self.definitions += 1;
        let found = if self.definitions > MAX_DEFINITIONS {
            Some("its definition refers to more than 64 others (in a circle?)".into())
        } else {
            // Depth is counted within each definition: a chain of them is
            // bounded by their number.
            let outer = std::mem::replace(&mut self.depth, 0);
            let found = self.node(def);
            self.depth = outer;
            found
        };
        // SAFETY: `def` is the copy snd_config_search_definition made.
        unsafe { sys::snd_config_delete(def) };
        found
    }

    /// Looks through one compound node: its `type`, the PCMs it names
    /// (`slave.pcm`, `capture.pcm`, `slaves.a.pcm`, a `slave` string
    /// naming a `pcm_slave`), and every compound inside it.
    fn node(&mut self, node: *mut sys::snd_config_t) -> Option<String> {
        self.depth += 1;
        let found = if self.depth > MAX_DEPTH {
            Some("its definition is nested too deeply to check (more than 32 levels)".into())
        } else {
            self.members(node)
        };
        self.depth -= 1;
        found
    }

    /// [`Self::node`]'s look at each member of `node`.
    fn members(&mut self, node: *mut sys::snd_config_t) -> Option<String> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Some("its definition is too large to check (more than 4096 entries)".into());
        }
        // SAFETY: a live node.
        let slaves = unsafe { id_of(node) }.as_deref() == Some("slaves");
        // SAFETY: `node` is a live node of a tree we hold; iterating a
        // compound's members does not change it.
        unsafe {
            if sys::snd_config_get_type(node) != sys::SND_CONFIG_TYPE_COMPOUND {
                return None;
            }
            let end = sys::snd_config_iterator_end(node);
            let mut it = sys::snd_config_iterator_first(node);
            while it != end {
                let child = sys::snd_config_iterator_entry(it);
                it = sys::snd_config_iterator_next(it);
                let id = id_of(child);
                let kind = sys::snd_config_get_type(child);
                let found = if kind == sys::SND_CONFIG_TYPE_COMPOUND {
                    self.node(child)
                } else if kind == sys::SND_CONFIG_TYPE_STRING {
                    let Some(value) = string_of(child) else {
                        continue;
                    };
                    match id.as_deref() {
                        Some("type")
                            if (value.to_bytes() == b"file" || self.file_type(&value))
                                && !writes_nowhere(node) =>
                        {
                            Some("its definition has a `file` plugin, which writes a file or runs a command when opened".into())
                        }
                        Some("pcm") => self.definition(c"pcm", &value),
                        // `slave NAME`, and a `multi`'s `slaves.a NAME`:
                        // a `pcm_slave` definition.
                        Some("slave") => self.definition(c"pcm_slave", &value),
                        _ if slaves => self.definition(c"pcm_slave", &value),
                        _ => None,
                    }
                } else {
                    None
                };
                if found.is_some() {
                    return found;
                }
            }
        }
        None
    }
}

impl Walk {
    /// `type NAME` where `pcm_type.NAME` opens the `file` plugin under
    /// another name (`open "_snd_pcm_file_open"`).
    fn file_type(&mut self, name: &CStr) -> bool {
        let mut def: *mut sys::snd_config_t = std::ptr::null_mut();
        // SAFETY: `top` is a live tree; on success `def` is a copy we own
        // and delete below.
        let err = unsafe {
            sys::snd_config_search_definition(
                self.top,
                c"pcm_type".as_ptr(),
                name.as_ptr(),
                &mut def,
            )
        };
        if err < 0 || def.is_null() {
            return false;
        }
        let mut open: *mut sys::snd_config_t = std::ptr::null_mut();
        // SAFETY: searching the live copy for a direct member; reading its
        // string while the copy lives; then deleting the copy.
        unsafe {
            let file = sys::snd_config_search(def, c"open".as_ptr(), &mut open) >= 0
                && !open.is_null()
                && string_of(open).is_some_and(|o| o.to_bytes().ends_with(b"_snd_pcm_file_open"));
            sys::snd_config_delete(def);
            file
        }
    }
}

/// A `file` plugin's compound whose output is `/dev/null`: one that only
/// reads its `infile` (how a capture device is made of a file, as the
/// tests do). Any other output (a path, `|command`, a descriptor number)
/// is a side effect.
///
/// # Safety
/// `node` is a live compound node.
unsafe fn writes_nowhere(node: *mut sys::snd_config_t) -> bool {
    let mut out: *mut sys::snd_config_t = std::ptr::null_mut();
    // SAFETY: searching a live compound for a direct member.
    if unsafe { sys::snd_config_search(node, c"file".as_ptr(), &mut out) } < 0 || out.is_null() {
        // No output named: alsa-lib refuses to open it.
        return true;
    }
    // SAFETY: `out` is a live member of `node`.
    unsafe {
        sys::snd_config_get_type(out) == sys::SND_CONFIG_TYPE_STRING
            && string_of(out).is_some_and(|f| f.to_bytes() == b"/dev/null")
    }
}

/// A node's id.
///
/// # Safety
/// `node` is a live node.
unsafe fn id_of(node: *mut sys::snd_config_t) -> Option<String> {
    let mut id: *const libc::c_char = std::ptr::null();
    // SAFETY: the id pointer stays valid while the node lives; copied at once.
    (unsafe { sys::snd_config_get_id(node, &mut id) } >= 0 && !id.is_null())
        .then(|| unsafe { CStr::from_ptr(id) }.to_string_lossy().into_owned())
}

/// A string node's value.
///
/// # Safety
/// `node` is a live node.
unsafe fn string_of(node: *mut sys::snd_config_t) -> Option<CString> {
    let mut s: *const libc::c_char = std::ptr::null();
    // SAFETY: the value pointer stays valid while the node lives; copied at once.
    (unsafe { sys::snd_config_get_string(node, &mut s) } >= 0 && !s.is_null())
        .then(|| unsafe { CStr::from_ptr(s) }.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_devices_open_without_side_effects() {
        // Defined by alsa-lib's own configuration on every machine.
        assert_eq!(opening_runs("null"), None);
        assert_eq!(opening_runs("no_such_pcm_anywhere"), None);
    }
}
