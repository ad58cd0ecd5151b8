import Foundation
import PackagePlugin

/// `swift package local-broker start|stop|status [--management] [--port N]`: a throwaway RabbitMQ node for local
/// development, the same one Warren's tests use. Its data lives in the plugin's work folder under `.build`.
@main
struct LocalBrokerPlugin: CommandPlugin {
    func performCommand(context: PluginContext, arguments: [String]) async throws {
        let tool = try context.tool(named: "warren-local-broker")
        let dataDirectory = context.pluginWorkDirectoryURL.appendingPathComponent("broker").path
        var arguments = arguments
        if arguments.isEmpty { arguments = ["status"] }
        let process = Process()
        process.executableURL = tool.url
        process.arguments = arguments + ["--data-directory", dataDirectory]
        try process.run()
        process.waitUntilExit()
        // `status` exits 3 for "not running", an answer it has already printed, not a failure.
        let answeredNotRunning = arguments.first == "status" && process.terminationStatus == 3
        if process.terminationStatus != 0 && !answeredNotRunning {
            Diagnostics.error(
                "warren-local-broker \(arguments.first ?? "") failed (exit status \(process.terminationStatus)): see its message above"
            )
        }
    }
}
