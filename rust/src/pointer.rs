//! JSON pointers (RFC 6901) to where a value sits in an event, built without allocating until a
//! finding or violation actually needs one rendered.

/// Escapes one JSON pointer segment and appends it.
pub(crate) fn push_pointer_segment(out: &mut String, segment: &str) {
    out.push('/');
    for c in segment.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// A path into a JSON value as a stack-allocated list of parents.
#[derive(Clone, Copy)]
pub(crate) enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    pub(crate) fn pointer(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    pub(crate) fn write(&self, out: &mut String) {
        match self {
            At::Root => {}
            At::Key(parent, key) => {
                parent.write(out);
                push_pointer_segment(out, key);
            }
            At::Index(parent, i) => {
                parent.write(out);
                out.push('/');
                out.push_str(&i.to_string());
            }
        }
    }

    /// The last segment, unescaped: the property a violation is about.
    pub(crate) fn last(&self) -> String {
        match self {
            At::Root => String::new(),
            At::Key(_, key) => (*key).to_owned(),
            At::Index(_, i) => i.to_string(),
        }
    }
}
