//! The gateway protocol decoders on arbitrary bytes (what a gateway reads from any client, and
//! a client from any gateway): `Request::from_frame` and `Response::from_frame` must return an
//! error, never panic, and whatever they accept must re-encode to a frame that decodes to the
//! same message. Cells inside an accepted put are fed to the sealed-record decoder too.
#![no_main]

use gateway::proto::{Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = Request::from_frame(data) {
        let again = req.to_frame().expect("an accepted request re-encodes");
        assert_eq!(Request::from_frame(&again).ok(), Some(req.clone()));
        if let Request::Put { records, .. } = req {
            for r in records {
                let _ = gateway::cells::from_cells(&r.cells);
            }
        }
    }
    if let Ok(resp) = Response::from_frame(data) {
        let again = resp.to_frame().expect("an accepted response re-encodes");
        assert_eq!(Response::from_frame(&again).ok(), Some(resp));
    }
});
