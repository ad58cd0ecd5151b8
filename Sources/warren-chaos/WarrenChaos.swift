import ArgumentParser

/// The chaos suite: publishes a ledger of message ids through broker and worker faults and checks that every
/// confirmed message was handled (or parked in the dead letters with a reason). See docs/chaos.md.
@main
struct WarrenChaos: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-chaos",
        abstract:
            "Publishes through broker restarts, stop_app, a frozen broker, killed workers and a killed cluster node; counts what was lost.",
        subcommands: [RunCommand.self, ChaosWorkerCommand.self],
        defaultSubcommand: RunCommand.self)
}
