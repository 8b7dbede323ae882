//! The `dave` command line: a thin layer over the library.

fn main() {
    eprintln!("dave: the command line is not built yet");
    std::process::exit(2);
}
