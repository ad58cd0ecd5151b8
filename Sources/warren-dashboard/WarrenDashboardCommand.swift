import ArgumentParser
import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Warren
import WarrenAMQP
import WarrenDashboard
import WarrenHTTP
import WarrenLedger

/// The ledger's process: records every worker's job events in a store (unless `--no-ingest`) and serves the jobs API
/// under `/api/` (bearer token) and `/health` (open). The dashboard's pages come next (docs/ledger.md).
@main
struct WarrenDashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-dashboard",
        abstract: "Record Warren's job events in a ledger and serve job status over HTTP.",
        discussion: """
            WARREN_DASHBOARD_TOKEN (required) is the bearer token of /api/; WARREN_DASHBOARD_READONLY_TOKEN, when set, \
            is a second one. WARREN_AMQP_URL is the broker to ingest from. Durations: 90s, 30m, 12h, 7d.
            """)

    @Option(help: "The port to listen on; 0 lets the system choose (the address is printed).") var port = 8089
    @Option(help: "The address to bind.") var host = "127.0.0.1"
    @Option(help: "sqlite:PATH or postgres://user:password@host:port/database.") var store = "sqlite:warren-ledger.sqlite"
    @Option(help: "Broker URI (default: WARREN_AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/).") var url: String?
    @Flag(help: "Serve the store only; record nothing (another process ingests).") var noIngest = false
    @Option(help: "The ledger's queue; every process that ingests into one store uses the same.") var ledgerQueue = "warren.ledger"
    @Option(help: "The topic exchange the workers report their events to.") var eventsExchange = "warren.events"
    @Option(help: "How long succeeded jobs are kept.") var keepSucceeded = "7d"
    @Option(help: "How long dead-lettered jobs are kept.") var keepDeadLettered = "30d"
    @Option(help: "How long jobs that never finished are kept.") var keepUnfinished = "30d"
    @Option(help: "The most jobs kept; the oldest go first. 0: no bound.") var maxJobs = 10_000_000
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level '\(logLevel)'") }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "warren-dashboard")
        let environment = ProcessInfo.processInfo.environment
        guard let token = environment["WARREN_DASHBOARD_TOKEN"], !token.isEmpty else {
            throw ValidationError("set WARREN_DASHBOARD_TOKEN: /api/ is never served without a token")
        }
        let tokens = [token] + [environment["WARREN_DASHBOARD_READONLY_TOKEN"]].compactMap { $0 }
        let location = try LedgerLocation(store)
        let retention = RetentionPolicy(
            succeeded: try Self.duration(keepSucceeded), deadLettered: try Self.duration(keepDeadLettered),
            unfinished: try Self.duration(keepUnfinished), maxJobs: maxJobs > 0 ? maxJobs : nil)
        let ledgerStore = try await location.open(logger: Logger(label: "warren.ledger.store"))

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        let ledger: Ledger?
        if noIngest {
            try await ledgerStore.migrate()
            ledger = nil
        } else {
            let uri = url ?? environment["WARREN_AMQP_URL"] ?? "amqp://guest:guest@127.0.0.1:5672/"
            let transport = RabbitMQTransport(endpoints: try AMQPEndpoint.parseList(uri), connectionName: "warren-dashboard", logger: logger)
            let recording = Ledger(
                transport: transport, store: ledgerStore, queue: ledgerQueue, exchange: eventsExchange, retention: retention,
                logger: Logger(label: "warren.ledger"))
            ledger = recording
            services.append(.init(service: recording))
        }

        let router = Router()
        router.get("health") { _, _ -> Response in
            let ingest = ledger.map { $0.health.isReady ? "consuming" : "not_consuming" } ?? "off"
            return try JSONResponse.make(["ingest": ingest, "status": "ok"])
        }
        let api = router.group("api").add(middleware: BearerTokenMiddleware(tokens: tokens))
        LedgerAPI(store: ledgerStore).addRoutes(to: api)
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "warren-dashboard"),
            onServerRunning: { [host] channel in
                // One line a script or a test can read the address from (port 0 chooses one).
                FileHandle.standardOutput.write(Data("listening on http://\(host):\(channel.localAddress?.port ?? 0)\n".utf8))
            },
            logger: logger)
        // Listed first, so that it stops last.
        services.insert(.init(service: app), at: 0)
        logger.info("warren-dashboard starting", metadata: ["store": "\(location)", "ingest": "\(!noIngest)"])
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        try await group.run()
        try? await ledgerStore.close()
    }

    /// `90s`, `30m`, `12h`, `7d`.
    static func duration(_ text: String) throws -> Duration {
        let units: [Character: Int64] = ["s": 1, "m": 60, "h": 3_600, "d": 86_400]
        guard let unit = text.last.flatMap({ units[$0] }), let count = Int64(text.dropLast()), count >= 0 else {
            throw ValidationError("'\(text)' is not a duration such as 90s, 30m, 12h or 7d")
        }
        return .seconds(count * unit)
    }
}
