//! The storage-node protocol decoders on arbitrary bytes: the first byte is the frame kind,
//! the rest its body. `Request::from_frame` and `Response::from_frame` (which include the
//! manifest and audit-proof decoders) must return an error, never panic, and whatever they
//! accept must encode to a frame that decodes to the same message.
#![no_main]

use kvs::net::frame::Frame;
use kvs::net::proto::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((kind, body)) = data.split_first() else {
        return;
    };
    let frame = Frame {
        kind: *kind,
        body: body.to_vec(),
    };
    if let Ok(req) = Request::from_frame(&frame) {
        let again = req.to_frame().expect("an accepted request re-encodes");
        assert_eq!(Request::from_frame(&again).ok(), Some(req));
    }
    if let Ok(resp) = Response::from_frame(&frame) {
        let again = resp.to_frame().expect("an accepted response re-encodes");
        assert_eq!(Response::from_frame(&again).ok(), Some(resp));
    }
});
