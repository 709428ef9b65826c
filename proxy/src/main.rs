fn main() -> std::process::ExitCode {
    edgesteer::cli::main()
}
