//! `cnn-gpu info`.

use cnn_gpu::backend::gpu::list_adapters;

pub(crate) fn info_command() {
    let (adapters, pick) = list_adapters();
    if adapters.is_empty() {
        println!(
            "No GPU adapter found (Vulkan, Metal or DX12). `--backend auto` trains on the CPU."
        );
        println!("On Linux without a GPU, Mesa's lavapipe provides one: apt-get install mesa-vulkan-drivers");
        return;
    }
    for a in &adapters {
        let mark = match (Some(a.index) == pick, a.device_type == "Cpu") {
            (true, false) => "  <- picked by --backend auto",
            // See open_backend: auto trains on the CPU backend rather than a software adapter.
            (true, true) => {
                "  <- picked by --backend gpu (auto uses the CPU backend: software adapter)"
            }
            _ => "",
        };
        println!("[{}] {}{mark}", a.index, a.name);
        println!(
            "    backend {}, type {}, driver {} {}",
            a.backend, a.device_type, a.driver, a.driver_info
        );
        println!(
            "    max buffer {} MiB, max storage binding {} MiB, max workgroups per dimension {}, \
             workgroup memory {} KiB",
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_workgroup_storage_size >> 10
        );
        println!(
            "    timestamp queries: {}, inside passes: {}",
            yes_no(a.timestamp_query),
            yes_no(a.timestamp_query_inside_passes)
        );
    }
}

pub(crate) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
