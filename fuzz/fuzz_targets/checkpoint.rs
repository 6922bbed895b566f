//! The checkpoint parser (`cnn_gpu::checkpoint::parse`, the code `load` runs on every file)
//! on arbitrary bytes: Ok or a clean error naming the file, never a panic.
#![no_main]

use std::path::Path;

use cnn_gpu::checkpoint::parse;
use cnn_gpu::model::ModelSpec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let spec = ModelSpec::simple_cnn();
    match parse(data, Path::new("fuzz.safetensors"), &spec) {
        Ok(ckpt) => {
            // What Ok promises: every parameter with its shape and only finite values.
            let expected = spec.param_shapes().unwrap();
            assert_eq!(ckpt.params.len(), expected.len());
            for (t, (name, shape)) in ckpt.params.iter().zip(&expected) {
                assert_eq!(&t.name, name);
                assert_eq!(&t.shape, shape);
                assert_eq!(t.data.len(), shape.iter().product::<usize>());
                assert!(t.data.iter().all(|x| x.is_finite()));
            }
            let _ = ckpt.train_state();
        }
        Err(e) => assert!(e.to_string().starts_with("fuzz.safetensors: "), "{e}"),
    }
});
