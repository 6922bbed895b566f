//! Checkpoint files on disk: every kind of bad file is an `Error::Data` naming it, writes are
//! atomic and name the path, and a written checkpoint has the usual permissions.

use std::path::Path;

use cnn_gpu::checkpoint;
use cnn_gpu::model::{Layer, ModelSpec};
use cnn_gpu::Error;
use safetensors::tensor::Dtype;

use crate::{bits, le, pytorch_like, write_raw};

/// `checkpoint::load` refuses the file with an `Error::Data` naming it and mentioning `what`.
#[track_caller]
fn assert_refused(path: &Path, what: &str) {
    match checkpoint::load(path, &ModelSpec::simple_cnn()) {
        Err(e @ Error::Data { .. }) => {
            let Error::Data { path: p, message } = &e else {
                unreachable!()
            };
            assert_eq!(p, path);
            assert!(
                message.contains(what),
                "{message:?} should mention {what:?}"
            );
            assert!(e.to_string().contains(&path.display().to_string()), "{e}");
        }
        other => panic!("{}: expected Error::Data, got {other:?}", path.display()),
    }
}

#[test]
fn bad_files_are_data_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name);

    assert_refused(&p("missing.safetensors"), "cannot read");

    std::fs::write(p("text.safetensors"), b"hello, this is not a checkpoint").unwrap();
    assert_refused(&p("text.safetensors"), "not a safetensors");

    std::fs::write(p("tiny.safetensors"), b"abc").unwrap();
    assert_refused(&p("tiny.safetensors"), "not a safetensors");

    write_raw(&p("good.safetensors"), &pytorch_like(1), None);
    let bytes = std::fs::read(p("good.safetensors")).unwrap();
    std::fs::write(p("truncated.safetensors"), &bytes[..bytes.len() - 10]).unwrap();
    assert_refused(&p("truncated.safetensors"), "not a safetensors");

    let mut t = pytorch_like(1);
    t[4].2 = vec![3136, 64]; // fc1.weight transposed
    write_raw(&p("shape.safetensors"), &t, None);
    assert_refused(&p("shape.safetensors"), "`fc1.weight` has shape [3136, 64]");

    let mut t = pytorch_like(1);
    t.remove(3);
    write_raw(&p("missing_tensor.safetensors"), &t, None);
    assert_refused(
        &p("missing_tensor.safetensors"),
        "missing parameter tensor `conv2.bias`",
    );

    let mut t = pytorch_like(1);
    t.push(("fc3.weight".into(), Dtype::F32, vec![2], le(&[1.0, 2.0])));
    write_raw(&p("extra.safetensors"), &t, None);
    assert_refused(&p("extra.safetensors"), "unexpected tensor `fc3.weight`");

    let mut t = pytorch_like(1);
    let doubles: Vec<u8> = (0..10).flat_map(|i| (i as f64).to_le_bytes()).collect();
    t[7] = ("fc2.bias".into(), Dtype::F64, vec![10], doubles);
    write_raw(&p("f64.safetensors"), &t, None);
    assert_refused(
        &p("f64.safetensors"),
        "`fc2.bias` has dtype F64, expected F32",
    );

    // Another architecture: a SimpleCNN with 16 first-layer channels, saved by us.
    let mut spec = ModelSpec::simple_cnn();
    spec.layers[0] = Layer::Conv2d {
        in_channels: 1,
        out_channels: 16,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
    };
    spec.layers[3] = Layer::Conv2d {
        in_channels: 16,
        out_channels: 64,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
    };
    let params = spec.init_params(0).unwrap();
    checkpoint::save(
        &p("other.safetensors"),
        &spec,
        &params,
        Default::default(),
        None,
    )
    .unwrap();
    assert_refused(&p("other.safetensors"), "another architecture");
    let err = checkpoint::load(&p("other.safetensors"), &ModelSpec::simple_cnn())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Conv2d(1→16") && err.contains("Conv2d(1→32"),
        "{err}"
    );
}

#[test]
fn writes_are_atomic_and_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::simple_cnn();
    let params = spec.init_params(0).unwrap();

    // A directory that does not exist.
    let path = dir.path().join("no/such/dir/m.safetensors");
    let err = checkpoint::save(&path, &spec, &params, Default::default(), None).unwrap_err();
    assert!(matches!(err, Error::Data { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(checkpoint::check_writable(&path, "checkpoint").is_err());

    // A read-only directory (root writes there anyway: then only the no-leftover check runs).
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let path = ro.join("m.safetensors");
    let mut perms = std::fs::metadata(&ro).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    perms.set_mode(0o555);
    std::fs::set_permissions(&ro, perms.clone()).unwrap();
    let result = checkpoint::save(&path, &spec, &params, Default::default(), None);
    let root_writes = std::fs::File::create(ro.join("probe")).is_ok();
    if root_writes {
        eprintln!("skipped the read-only case: this user writes into read-only directories");
        result.unwrap();
    } else {
        let err = result.unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(checkpoint::check_writable(&path, "checkpoint").is_err());
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0, "no file left");
    }
    perms.set_mode(0o755);
    std::fs::set_permissions(&ro, perms).unwrap();

    // A write that fails at the last step (the path is a directory: the rename fails, even for
    // root) leaves no temporary file behind.
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let target = sub.join("taken");
    std::fs::create_dir(&target).unwrap();
    let err = checkpoint::save(&target, &spec, &params, Default::default(), None).unwrap_err();
    assert!(err.to_string().contains("taken"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&sub)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        left,
        vec![std::ffi::OsString::from("taken")],
        "no temporary file left"
    );
    std::fs::remove_dir_all(&sub).unwrap();

    // Overwriting an existing checkpoint leaves only the new one, and no temporary file.
    let path = dir.path().join("m.safetensors");
    checkpoint::save(&path, &spec, &params, Default::default(), None).unwrap();
    let params2 = spec.init_params(1).unwrap();
    checkpoint::save(&path, &spec, &params2, Default::default(), None).unwrap();
    assert_eq!(
        bits(&checkpoint::load(&path, &spec).unwrap().params),
        bits(&params2)
    );
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "ro" && n != "no")
        .collect();
    assert_eq!(names, ["m.safetensors"]);
    assert!(checkpoint::check_writable(&path, "checkpoint").is_ok());
    assert!(
        checkpoint::check_writable(dir.path(), "checkpoint").is_err(),
        "a directory is not a file name"
    );
}

/// A checkpoint gets the permissions of any file the user creates (0666 less the umask), not
/// the temporary file's private 0600.
#[test]
fn written_checkpoints_have_the_usual_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let spec = ModelSpec::simple_cnn();
    let path = dir.path().join("m.safetensors");
    checkpoint::save(
        &path,
        &spec,
        &spec.init_params(0).unwrap(),
        Default::default(),
        None,
    )
    .unwrap();
    std::fs::File::create(dir.path().join("plain")).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), mode(&dir.path().join("plain")));
    // (Under a umask of 077 both are 0600 and this proves nothing; CI's is 022.)
}
