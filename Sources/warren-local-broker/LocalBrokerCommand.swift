import ArgumentParser
import Foundation
import WarrenLocalBroker

/// Runs a throwaway RabbitMQ node for local development; `swift package local-broker` calls this.
@main
struct LocalBrokerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-local-broker",
        abstract: "Start, stop or inspect a throwaway RabbitMQ node on 127.0.0.1 for local development.",
        subcommands: [Start.self, Stop.self, Status.self]
    )

    struct Options: ParsableArguments {
        @Option(help: "Folder holding the node's data and state.")
        var dataDirectory: String = FileManager.default.currentDirectoryPath + "/.warren/local-broker"
    }

    struct Start: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Start the node (or report the one already running).")
        @OptionGroup var options: Options
        @Option(help: "AMQP port; default: a free one.") var port: Int?
        @Flag(help: "Enable the management UI (rabbitmq_management).") var management = false

        func run() async throws {
            if let running = try LocalBroker.attach(dataDirectory: options.dataDirectory), running.isListening {
                print("already running: \(running.nodeName)")
                printURIs(running)
                return
            }
            try? FileManager.default.removeItem(atPath: options.dataDirectory)
            print("starting a RabbitMQ node (a few seconds) …")
            let broker = try await LocalBroker.start(
                LocalBrokerConfiguration(
                    nodeName: Self.nodeName(for: options.dataDirectory), dataDirectory: options.dataDirectory,
                    plugins: LocalBrokerConfiguration.warrenPlugins + (management ? ["rabbitmq_management"] : []),
                    stopWhenOwnerExits: false,
                    removeDataOnStop: false,
                    port: port))
            print("started \(broker.nodeName) (data in \(broker.dataDirectory))")
            printURIs(broker)
        }

        /// One node name per data directory: Erlang refuses a second node of the same name on the host, so with a
        /// fixed name a developer's own node and `make demo`'s could not run side by side.
        static func nodeName(for dataDirectory: String) -> String {
            let path = URL(fileURLWithPath: dataDirectory).standardizedFileURL.path
            var hash: UInt32 = 2_166_136_261  // FNV-1a: stable across runs, unlike `hashValue`
            for byte in path.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
            return "warren-local-" + String(hash, radix: 16)
        }
    }

    struct Stop: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop the node and delete its data.")
        @OptionGroup var options: Options

        func run() async throws {
            guard let broker = try LocalBroker.attach(dataDirectory: options.dataDirectory) else {
                print("no local broker is running")
                return
            }
            try await broker.stop()
            try? FileManager.default.removeItem(atPath: options.dataDirectory)
            print("stopped \(broker.nodeName)")
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Say whether the node runs, and its URI.")
        @OptionGroup var options: Options

        func run() async throws {
            guard let broker = try LocalBroker.attach(dataDirectory: options.dataDirectory), broker.isListening else {
                print("not running (start it with: swift package local-broker start)")
                throw ExitCode(3)
            }
            print("running: \(broker.nodeName)")
            printURIs(broker)
        }
    }
}

private func printURIs(_ broker: LocalBroker) {
    print("WARREN_AMQP_URL=\(broker.amqpURL)")
    if let management = broker.managementPort {
        print("management UI: http://127.0.0.1:\(management)/ (guest / guest)")
    }
}
