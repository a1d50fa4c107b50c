//! The `kexec` command: a thin layer over the library.
fn main() {
    std::process::exit(0);
}
