//! Content digests: how airlock names every artifact it runs or judges.
//!
//! Reports, attestations and the store bind verdicts to `sha256:<hex>`
//! digests, so each digest must name exactly one thing. There are three
//! kinds (the byte-level definitions are in `docs/digests.md`):
//!
//! * a **component** and a **dataset** are named by the plain sha256 of the
//!   file's bytes ([`Digest::of`]), so `sha256sum`, OCI registries and
//!   model-signing tools compute the same value;
//! * a **bundle** (a model's data directory) is named by
//!   [`Digest::of_bundle_tree`]: sha256 over a versioned, domain-separated,
//!   length-prefixed encoding of its whole tree — names, file sizes and
//!   contents, and directories (empty ones included). The encoding is
//!   injective, so two different trees never share a digest (short of a
//!   sha256 collision), and its domain prefix keeps a bundle digest from ever
//!   equalling a component or dataset digest.
//!
//! Names that could make a tree ambiguous to a person reading a listing, or
//! that no portable tool can reproduce (not UTF-8, control characters, `.`
//! and `..`), are refused by [`check_name`] rather than encoded.

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;

/// A sha256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(pub [u8; 32]);

/// The domain-separation prefix of a version-1 bundle digest. A new
/// encoding gets a new prefix, so digests of different versions never
/// collide with each other.
pub const BUNDLE_DOMAIN_V1: &[u8] = b"airlock-bundle-v1\0";

/// Tag byte that starts a file entry in the bundle encoding.
pub const TAG_FILE: u8 = 0x01;
/// Tag byte that starts a directory entry in the bundle encoding.
pub const TAG_DIR: u8 = 0x02;

impl Digest {
    /// The digest of `bytes` (components and datasets).
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// The lowercase hex of the digest, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses `sha256:<64 hex digits>`.
    pub fn parse(s: &str) -> Option<Digest> {
        let hex = s.strip_prefix("sha256:")?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex, &mut out).ok()?;
        Some(Digest(out))
    }

    /// The version-1 bundle digest of `root` (see `docs/digests.md`):
    /// sha256 over [`BUNDLE_DOMAIN_V1`] followed by the encoding of the root
    /// as a directory entry with an empty name.
    pub fn of_bundle_tree(root: &Tree) -> Digest {
        let mut h = Sha256::new();
        h.update(BUNDLE_DOMAIN_V1);
        encode_dir(&mut h, "", root);
        Digest(h.finalize().into())
    }
}

/// One entry of a bundle tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file: its length and the sha256 of its bytes.
    File {
        /// Length in bytes.
        size: u64,
        /// sha256 of the content.
        content: Digest,
    },
    /// A directory and everything in it.
    Dir(Tree),
}

impl Node {
    /// A file entry holding `bytes`.
    pub fn file(bytes: &[u8]) -> Node {
        Node::File {
            size: bytes.len() as u64,
            content: Digest::of(bytes),
        }
    }
}

/// A directory's entries, kept sorted by the bytes of their names (the
/// order the encoding uses), with every name checked by [`check_name`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    entries: BTreeMap<String, Node>,
}

impl Tree {
    /// An empty directory.
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds an entry; refuses a name [`check_name`] refuses or one that is
    /// already present.
    pub fn insert(&mut self, name: &OsStr, node: Node) -> Result<(), NameError> {
        let name = check_name(name)?;
        if self.entries.contains_key(name) {
            return Err(NameError::Duplicate {
                name: escape_name(OsStr::new(name)),
            });
        }
        self.entries.insert(name.to_string(), node);
        Ok(())
    }

    /// Number of direct entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the directory is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries in encoding order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Node)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }
}

fn put_len(h: &mut Sha256, n: u64) {
    h.update(n.to_be_bytes());
}

fn encode_dir(h: &mut Sha256, name: &str, tree: &Tree) {
    h.update([TAG_DIR]);
    put_len(h, name.len() as u64);
    h.update(name.as_bytes());
    put_len(h, tree.entries.len() as u64);
    // BTreeMap<String, _> iterates in byte order of the UTF-8 names.
    for (child, node) in &tree.entries {
        match node {
            Node::File { size, content } => {
                h.update([TAG_FILE]);
                put_len(h, child.len() as u64);
                h.update(child.as_bytes());
                put_len(h, *size);
                h.update(content.0);
            }
            Node::Dir(sub) => encode_dir(h, child, sub),
        }
    }
}

/// Why a bundle entry's name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is not valid UTF-8.
    #[error(
        "name `{name}` is not valid UTF-8 (bundle entry names must be UTF-8 without control characters)"
    )]
    NotUtf8 {
        /// The name, escaped.
        name: String,
    },
    /// The name holds a C0 or C1 control character or DEL.
    #[error(
        "name `{name}` contains the control character {code} (bundle entry names must be UTF-8 without control characters)"
    )]
    ControlCharacter {
        /// The name, escaped.
        name: String,
        /// The offending character, as `U+XXXX`.
        code: String,
    },
    /// `.`, `..`, the empty name, or a name with a `/`.
    #[error("name `{name}` is not a single path component (`.`, `..`, empty and `/` are refused)")]
    NotAComponent {
        /// The name, escaped.
        name: String,
    },
    /// Two entries of one directory with the same name.
    #[error("name `{name}` appears twice in one directory")]
    Duplicate {
        /// The name, escaped.
        name: String,
    },
}

/// Checks that `name` may appear in a bundle: valid UTF-8, no control
/// character (U+0000–U+001F, U+007F DEL, U+0080–U+009F), a single path
/// component (not empty, `.` or `..`, no `/`). Returns it as `&str`.
pub fn check_name(name: &OsStr) -> Result<&str, NameError> {
    let escaped = || escape_name(name);
    let Some(s) = name.to_str() else {
        return Err(NameError::NotUtf8 { name: escaped() });
    };
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(NameError::ControlCharacter {
            name: escaped(),
            code: format!("U+{:04X}", c as u32),
        });
    }
    if s.is_empty() || s == "." || s == ".." || s.contains('/') {
        return Err(NameError::NotAComponent { name: escaped() });
    }
    Ok(s)
}

/// A file name as people can read it in one line: valid UTF-8 is kept
/// except control characters, `\` and backticks, which are escaped as in
/// Rust strings; bytes that are not UTF-8 become `\xNN`. The result never
/// contains a control character, so a hostile name cannot forge lines in
/// an error message or a terminal.
pub fn escape_name(name: &OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for chunk in name.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '`' {
                out.push_str("\\`");
            } else if c.is_control() || c == '\\' {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A bundle written as `(path, content)` pairs: `None` marks a directory;
/// parents are created as needed.
pub type Listing<'a> = &'a [(&'a str, Option<&'a [u8]>)];

/// The test vectors published in `docs/digests.md`: a name, the tree as
/// `(path, content)` pairs (`None` marks a directory; parents are created
/// as needed), and its version-1 bundle digest. A unit test recomputes every
/// digest and checks that the document shows each of them.
pub const BUNDLE_TEST_VECTORS: &[(&str, Listing<'static>, &str)] = &[
    (
        "empty bundle",
        &[],
        "sha256:af53b172e3be2b721d6f4efe6a05122ea66e60a130a043bf3b0f8dd522dbe5ef",
    ),
    (
        "one file `model.json` holding `{}`",
        &[("model.json", Some(b"{}"))],
        "sha256:b2ec855be7ff63dd2cbfb0cb66f3e9e740c03c17f49b014096758274830e8849",
    ),
    (
        "files `a` (`1`) and `b` (empty)",
        &[("a", Some(b"1")), ("b", Some(b""))],
        "sha256:b7945fd6042cdb19e71074ac900e7001ad053bc08188af1f6f41fa375d255e83",
    ),
    (
        "files `a` (`1`) and `b` (empty) and an empty directory `c`",
        &[("a", Some(b"1")), ("b", Some(b"")), ("c", None)],
        "sha256:26737329284e27ae57438544864298e80dd97c6cb8845bff2fa46cc27bd072d8",
    ),
    (
        "`weights/w.bin` holding `hi` and `model.json` holding `{}`",
        &[("weights/w.bin", Some(b"hi")), ("model.json", Some(b"{}"))],
        "sha256:4f48cb85be9fb00d23ce954cc6e604ad2c4a5523fd0a0e0c3e4d3e2f6d3c3043",
    ),
];

/// Builds a tree from a test-vector listing.
pub fn tree_from_listing(listing: Listing<'_>) -> Result<Tree, NameError> {
    fn add(tree: &mut Tree, parts: &[&str], content: Option<&[u8]>) -> Result<(), NameError> {
        let (first, rest) = parts.split_first().expect("a path has a component");
        let name = OsStr::new(first);
        if rest.is_empty() {
            let node = match content {
                Some(bytes) => Node::file(bytes),
                None => Node::Dir(Tree::new()),
            };
            return tree.insert(name, node);
        }
        let key = check_name(name)?.to_string();
        let child = tree
            .entries
            .entry(key)
            .or_insert_with(|| Node::Dir(Tree::new()));
        match child {
            Node::Dir(sub) => add(sub, rest, content),
            Node::File { .. } => Err(NameError::Duplicate {
                name: escape_name(name),
            }),
        }
    }
    let mut root = Tree::new();
    for (path, content) in listing {
        let parts: Vec<&str> = path.split('/').collect();
        add(&mut root, &parts, *content)?;
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn known_vector_and_round_trip() {
        let d = Digest::of(b"abc");
        assert_eq!(
            d.to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert_eq!(Digest::parse("sha256:zz"), None);
        assert_eq!(Digest::parse(&d.hex()), None);
    }

    fn tree(listing: &[(&str, Option<&[u8]>)]) -> Tree {
        tree_from_listing(listing).unwrap()
    }

    #[test]
    fn the_published_test_vectors_match_the_code_and_the_document() {
        let doc = include_str!("../../../docs/digests.md");
        for (name, listing, hex) in BUNDLE_TEST_VECTORS {
            let got = Digest::of_bundle_tree(&tree(listing)).to_string();
            assert_eq!(&got, hex, "vector `{name}`");
            assert!(
                doc.contains(hex),
                "docs/digests.md lacks vector `{name}`: {hex}"
            );
        }
    }

    #[test]
    fn the_encoding_of_a_small_tree_is_exactly_the_documented_bytes() {
        // One file `a` holding `1`: spelled out byte by byte as in the doc.
        let mut bytes = BUNDLE_DOMAIN_V1.to_vec();
        bytes.push(TAG_DIR);
        bytes.extend(0u64.to_be_bytes());
        bytes.extend(1u64.to_be_bytes());
        bytes.push(TAG_FILE);
        bytes.extend(1u64.to_be_bytes());
        bytes.extend(b"a");
        bytes.extend(1u64.to_be_bytes());
        bytes.extend(Digest::of(b"1").0);
        assert_eq!(
            Digest::of_bundle_tree(&tree(&[("a", Some(b"1"))])),
            Digest::of(&bytes)
        );
    }

    #[test]
    fn a_file_name_with_a_newline_cannot_forge_a_second_entry() {
        // Under the old text manifest, one file whose name embeds a forged
        // manifest line digested like two files. Such a name is now refused,
        // and the encoding itself tells one entry from two.
        let forged = format!("a\n{}  b", Digest::of(b"2"));
        let err = check_name(OsStr::new(&forged)).unwrap_err();
        assert_eq!(
            err,
            NameError::ControlCharacter {
                name: format!("a\\n{}  b", Digest::of(b"2")),
                code: "U+000A".into()
            }
        );
        assert_eq!(
            err.to_string(),
            format!(
                "name `a\\n{}  b` contains the control character U+000A (bundle entry names must be UTF-8 without control characters)",
                Digest::of(b"2")
            )
        );
        let two = tree(&[("a", Some(b"1")), ("b", Some(b"2"))]);
        let one = tree(&[("a b", Some(b"1"))]);
        assert_ne!(Digest::of_bundle_tree(&two), Digest::of_bundle_tree(&one));
    }

    #[test]
    fn a_single_file_bundle_is_not_its_bare_file_hash_and_covers_its_name() {
        let bytes = b"{}";
        let a = Digest::of_bundle_tree(&tree(&[("model.json", Some(bytes))]));
        let b = Digest::of_bundle_tree(&tree(&[("other.json", Some(bytes))]));
        assert_ne!(a, Digest::of(bytes), "a bundle digest is domain-separated");
        assert_ne!(a, b, "the file's name is covered");
    }

    #[test]
    fn a_file_and_a_directory_of_the_same_name_differ() {
        let file = tree(&[("x", Some(b""))]);
        let dir = tree(&[("x", None)]);
        assert_ne!(Digest::of_bundle_tree(&file), Digest::of_bundle_tree(&dir));
    }

    #[test]
    fn an_empty_directory_changes_the_digest() {
        let without = tree(&[("a", Some(b"1"))]);
        let with = tree(&[("a", Some(b"1")), ("e", None)]);
        let nested = tree(&[("a", Some(b"1")), ("e/f", None)]);
        let d = [without, with, nested].map(|t| Digest::of_bundle_tree(&t));
        assert_ne!(d[0], d[1]);
        assert_ne!(d[1], d[2]);
        assert_ne!(d[0], d[2]);
    }

    #[test]
    fn moving_a_file_between_directories_changes_the_digest() {
        // Same names and bytes, different nesting: `d/x` + `y` vs `d/x/y`-like
        // shapes must not collide, since entry counts delimit directories.
        let a = tree(&[("d/x", Some(b"1")), ("y", Some(b"2"))]);
        let b = tree(&[("d/x", Some(b"1")), ("d/y", Some(b"2"))]);
        assert_ne!(Digest::of_bundle_tree(&a), Digest::of_bundle_tree(&b));
    }

    #[test]
    fn names_that_are_not_utf8_or_hold_controls_are_refused_with_the_rule() {
        let bad = OsStr::from_bytes(b"w\xffx");
        assert_eq!(
            check_name(bad).unwrap_err().to_string(),
            "name `w\\xffx` is not valid UTF-8 (bundle entry names must be UTF-8 without control characters)"
        );
        for (name, code) in [
            ("a\rb", "U+000D"),
            ("a\tb", "U+0009"),
            ("a\u{7f}", "U+007F"),
            ("\u{85}x", "U+0085"),
            ("\u{1b}[2J", "U+001B"),
        ] {
            match check_name(OsStr::new(name)) {
                Err(NameError::ControlCharacter { code: c, .. }) => assert_eq!(c, code, "{name:?}"),
                other => panic!("{name:?}: {other:?}"),
            }
        }
        for name in [".", "..", "", "a/b"] {
            assert!(
                matches!(
                    check_name(OsStr::new(name)),
                    Err(NameError::NotAComponent { .. })
                ),
                "{name:?}"
            );
        }
        assert_eq!(
            check_name(OsStr::new("modèle v2.json")),
            Ok("modèle v2.json")
        );
    }

    #[test]
    fn escaped_names_hold_no_control_characters() {
        let name = OsStr::from_bytes(b"a\nb`\\\x1b[31m\xc3");
        assert_eq!(escape_name(name), "a\\nb\\`\\\\\\u{1b}[31m\\xc3");
    }
}
