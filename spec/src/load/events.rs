//! libyaml's event parser, one event at a time: the same parser serde_yaml deserializes
//! with, so what is counted and located here is what serde_yaml will see.
//!
//! Nothing here recurses and nothing reads ahead of the event asked for by more than
//! libyaml's own look-ahead for a simple key (at most 1024 characters), so a caller that
//! stops at a nesting limit stops after work proportional to the text read so far.

use std::marker::PhantomData;
use std::mem::MaybeUninit;

use unsafe_libyaml as unsafe_sys;

/// One parser event (only what the callers need of it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Event {
    StreamStart,
    StreamEnd,
    DocumentStart,
    DocumentEnd,
    Alias,
    /// A scalar's value (lossily decoded).
    Scalar(String),
    SequenceStart,
    SequenceEnd,
    MappingStart,
    MappingEnd,
}

/// Where an event starts, 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Mark {
    pub line: usize,
    pub column: usize,
}

impl Mark {
    fn of(mark: unsafe_sys::yaml_mark_t) -> Mark {
        Mark {
            line: mark.line as usize + 1,
            column: mark.column as usize + 1,
        }
    }
}

/// The events of `text`; ends after the stream's end or the first syntax error (whose
/// message serde_yaml reports better, so it is only marked here).
pub(super) struct Events<'t> {
    /// Boxed: libyaml keeps a pointer to the parser in the parser, so it must not move.
    parser: Box<unsafe_sys::yaml_parser_t>,
    finished: bool,
    text: PhantomData<&'t [u8]>,
}

/// A syntax error's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SyntaxError {
    pub mark: Mark,
}

impl<'t> Events<'t> {
    /// A parser reading `text`, which it borrows for its whole life.
    pub(super) fn new(text: &'t str) -> Events<'t> {
        let mut parser = Box::<unsafe_sys::yaml_parser_t>::new_uninit();
        // SAFETY: `yaml_parser_initialize` initializes the whole (boxed, so unmoving)
        // struct or fails (only when out of memory); the input stays borrowed for 't, and
        // the parser is deleted (once) in Drop.
        unsafe {
            let raw = parser.as_mut_ptr();
            assert!(
                !unsafe_sys::yaml_parser_initialize(raw).fail,
                "libyaml could not allocate a parser"
            );
            unsafe_sys::yaml_parser_set_encoding(raw, unsafe_sys::YAML_UTF8_ENCODING);
            unsafe_sys::yaml_parser_set_input_string(raw, text.as_ptr(), text.len() as u64);
            Events {
                parser: parser.assume_init(),
                finished: false,
                text: PhantomData,
            }
        }
    }
}

impl Iterator for Events<'_> {
    type Item = Result<(Event, Mark), SyntaxError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let parser: *mut unsafe_sys::yaml_parser_t = &mut *self.parser;
        let mut event = MaybeUninit::<unsafe_sys::yaml_event_t>::uninit();
        // SAFETY: the parser was initialized in `new` and is not used after an error or the
        // stream's end; a successfully parsed event is read (its union field chosen by its
        // type) and then deleted exactly once.
        unsafe {
            if unsafe_sys::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                self.finished = true;
                return Some(Err(SyntaxError {
                    mark: Mark::of(self.parser.problem_mark),
                }));
            }
            let raw = event.as_mut_ptr();
            let converted = match (*raw).type_ {
                unsafe_sys::YAML_STREAM_START_EVENT => Event::StreamStart,
                unsafe_sys::YAML_STREAM_END_EVENT => Event::StreamEnd,
                unsafe_sys::YAML_DOCUMENT_START_EVENT => Event::DocumentStart,
                unsafe_sys::YAML_DOCUMENT_END_EVENT => Event::DocumentEnd,
                unsafe_sys::YAML_ALIAS_EVENT => Event::Alias,
                unsafe_sys::YAML_SCALAR_EVENT => {
                    let scalar = (*raw).data.scalar;
                    let bytes = if scalar.value.is_null() {
                        &[][..]
                    } else {
                        std::slice::from_raw_parts(scalar.value, scalar.length as usize)
                    };
                    Event::Scalar(String::from_utf8_lossy(bytes).into_owned())
                }
                unsafe_sys::YAML_SEQUENCE_START_EVENT => Event::SequenceStart,
                unsafe_sys::YAML_SEQUENCE_END_EVENT => Event::SequenceEnd,
                unsafe_sys::YAML_MAPPING_START_EVENT => Event::MappingStart,
                unsafe_sys::YAML_MAPPING_END_EVENT => Event::MappingEnd,
                _ => Event::StreamEnd,
            };
            let mark = Mark::of((*raw).start_mark);
            unsafe_sys::yaml_event_delete(raw);
            if converted == Event::StreamEnd {
                self.finished = true;
            }
            Some(Ok((converted, mark)))
        }
    }
}

impl Drop for Events<'_> {
    fn drop(&mut self) {
        // SAFETY: initialized in `new`, deleted only here.
        unsafe { unsafe_sys::yaml_parser_delete(&mut *self.parser) }
    }
}
