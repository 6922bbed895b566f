//! The model-file parser (`ModelSpec::from_toml`, what `--model FILE.toml` runs) on arbitrary
//! text: Ok or one clean error line, never a panic (an overflowing shape included); what it
//! accepts writes back (`to_toml`) to text that reads as the same model.
#![no_main]

use cnn_gpu::model::ModelSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match ModelSpec::from_toml(text) {
        Ok(spec) => {
            let shapes = spec.param_shapes().expect("an accepted model has its shapes");
            assert!(shapes.iter().all(|(_, s)| !s.is_empty()));
            let again = ModelSpec::from_toml(&spec.to_toml()).expect("its own TOML reads back");
            assert_eq!(again, spec);
        }
        Err(e) => {
            let cnn_gpu::Error::InvalidParams(msg) = &e else {
                panic!("not a refusal: {e:?}");
            };
            assert!(!msg.trim().is_empty() && !msg.contains('\n'), "one line: {msg:?}");
        }
    }
});
