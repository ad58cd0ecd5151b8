import ArgumentParser
import Foundation
import Hummingbird
import Logging
import Metrics
import ServiceLifecycle
import Warren
import WarrenAMQP
import WarrenDashboard
import WarrenHTTP
import WarrenLedger

/// The ledger's process: records every worker's job events in a store (unless `--no-ingest`) and serves the
/// dashboard's pages, the same data as JSON under `/api/`, and `/health` (open). docs/dashboard.md.
@main
struct WarrenDashboardCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "warren-dashboard",
        abstract: "Record Warren's job events in a ledger and serve the dashboard over HTTP.",
        subcommands: [Serve.self, HashPassword.self],
        defaultSubcommand: Serve.self)
}

/// Prints the users file hash of a password read from standard input.
struct HashPassword: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hash-password",
        abstract: "Read a password from standard input; print its hash for a users file line (name:role:hash).")

    @Option(help: "PBKDF2 rounds.") var rounds = PasswordHash.defaultRounds

    func run() throws {
        guard let line = readLine(strippingNewline: true), !line.isEmpty else {
            throw ValidationError("give the password on standard input")
        }
        print(try PasswordHash.make(line, rounds: rounds).encoded)
    }
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Record job events and serve the dashboard (the default).",
        discussion: """
            Who may get in: WARREN_DASHBOARD_TOKEN (an operator's bearer token, also a password for the sign-in form with \
            the user left empty), WARREN_DASHBOARD_READONLY_TOKEN (a viewer's), and the users of --users-file; at least \
            one of them. WARREN_AMQP_URL is the broker to ingest from. Durations: 90s, 30m, 12h, 7d.
            """)

    @Option(help: "The port to listen on; 0 lets the system choose (the address is printed).") var port = 8089
    @Option(help: "The address to bind.") var host = "127.0.0.1"
    @Option(help: "sqlite:PATH or postgres://user:password@host:port/database.") var store =
        "sqlite:warren-ledger.sqlite"
    @Option(help: "Broker URI (default: WARREN_AMQP_URL, then amqp://guest:guest@127.0.0.1:5672/).") var url: String?
    @Flag(help: "Serve the store only; record nothing (another process ingests).") var noIngest = false
    @Option(help: "The ledger's queue; every process that ingests into one store uses the same.") var ledgerQueue =
        "warren.ledger"
    @Option(help: "The topic exchange the workers report their events to.") var eventsExchange = "warren.events"
    @Option(help: "How long succeeded jobs are kept.") var keepSucceeded = "7d"
    @Option(help: "How long dead-lettered jobs are kept.") var keepDeadLettered = "30d"
    @Option(help: "How long jobs that never finished are kept.") var keepUnfinished = "30d"
    @Option(help: "The most jobs kept; the oldest go first. 0: no bound.") var maxJobs = 10_000_000
    @Option(help: "trace, debug, info, notice, warning, error or critical.") var logLevel = "info"
    @Option(help: "A users file: name:role:hash lines (role viewer or operator; hash from hash-password).")
    var usersFile: String?
    @Option(help: "A work queue to show on the queues page besides those the ledger has jobs of (repeatable).")
    var queue: [String] = []
    @Option(
        help:
            "The management API (e.g. http://127.0.0.1:15672) for unacked counts and rates; same user as the broker URI."
    )
    var managementURL: String?
    @Flag(
        help:
            "Leave dead letters in their queues rather than taking them into the ledger (replays then walk the queues)."
    )
    var keepDeadLettersInQueues = false
    @Option(
        help:
            "How long a replay or purge stays claimed after its last batch; then another process (or this one, restarted) takes it over."
    )
    var operationLease = "30s"
    @Flag(help: "Mark the session cookie Secure (when the dashboard is reached over HTTPS).") var secureCookies = false
    @Option(
        help:
            "A proxy in front of the dashboard whose X-Forwarded-For names the client that sign-in throttling counts (repeatable)."
    )
    var trustedProxy: [String] = []
    @Option(help: "How long the audit log's entries are kept.") var keepAudit = "365d"
    @Option(
        help: "The scope of the scheduler whose recurring jobs the schedules page shows (its hosts' --scheduler-scope)."
    )
    var schedulerScope: String?

    func run() async throws {
        guard let level = Logger.Level(rawValue: logLevel) else {
            throw ValidationError("unknown log level '\(logLevel)'")
        }
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "warren-dashboard")
        // Before anything makes a metric: the ledger's and its connections' metrics, served on /metrics.
        let prometheus = try WarrenPrometheus(logger: Logger(label: "warren.http"))
        MetricsSystem.bootstrap(prometheus.factory)
        let environment = ProcessInfo.processInfo.environment
        let access: DashboardAccess
        do {
            let users = try usersFile.map { try DashboardUsers(contentsOf: $0) } ?? DashboardUsers()
            let rounds = Set(users.users.compactMap { PasswordHash(encoded: $0.passwordHash)?.rounds })
            if rounds.count > 1 {
                // An unknown name costs the most rounds; a user whose hash has fewer answers faster, which tells it exists.
                logger.warning(
                    "the users file's hashes use different round counts: a sign-in's time tells which names exist; hash them again with one count",
                    metadata: ["rounds": "\(rounds.sorted())"])
            }
            access = try DashboardAccess(
                operatorToken: environment["WARREN_DASHBOARD_TOKEN"],
                viewerToken: environment["WARREN_DASHBOARD_READONLY_TOKEN"],
                users: users)
        } catch let error as DashboardConfigurationError {
            // One line, no usage text: the environment is wrong, not the command line.
            FileHandle.standardError.write(Data("warren-dashboard: \(error.message)\n".utf8))
            throw ExitCode(1)
        }
        let location = try LedgerLocation(store)
        let retention = RetentionPolicy(
            succeeded: try Self.duration(keepSucceeded), deadLettered: try Self.duration(keepDeadLettered),
            unfinished: try Self.duration(keepUnfinished), maxJobs: maxJobs > 0 ? maxJobs : nil,
            audit: try Self.duration(keepAudit))
        let ledgerStore = try await location.open(logger: Logger(label: "warren.ledger.store"))

        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        let ledger: Ledger?
        // With --no-ingest, the broker is asked about queues only when one is named.
        let namedBroker = url ?? environment["WARREN_AMQP_URL"]
        if let schedulerScope, !LeaderElection.isValidName(schedulerScope) {
            throw ValidationError("--scheduler-scope must be 1–120 of [A-Za-z0-9._-]")
        }
        let endpoints = try AMQPEndpoint.parseList(namedBroker ?? "amqp://guest:guest@127.0.0.1:5672/")
        var inspector: AMQPQueueInspector?
        var queueActions: AMQPDeadLetterQueueActions?
        var schedules: AMQPScheduleOperations?
        var runner: DeadLetterOperationRunner?
        var deadLetterTransport: RabbitMQTransport?
        if !noIngest || namedBroker != nil {
            // The intake and the operations on the dead letters the ledger holds share a connection of their own.
            let deadLetters = RabbitMQTransport(
                endpoints: endpoints, connectionName: "warren-dashboard dead letters", logger: logger)
            deadLetterTransport = deadLetters
            let operationRunner = DeadLetterOperationRunner(
                store: ledgerStore, transport: deadLetters, leaseDuration: try Self.duration(operationLease),
                logger: Logger(label: "warren.ledger.operations"))
            runner = operationRunner
            services.append(.init(service: operationRunner))
            if !noIngest && !keepDeadLettersInQueues {
                services.append(
                    .init(
                        service: DeadLetterIntake(
                            transport: deadLetters, store: ledgerStore, queues: queue,
                            logger: Logger(label: "warren.ledger.dead-letters"))))
            }
            queueActions = AMQPDeadLetterQueueActions(
                endpoints: endpoints, eventsExchange: eventsExchange,
                logger: Logger(label: "warren.dashboard.dead-letters"))
            guard let management = managementURL.map({ URL(string: $0) }) ?? .some(nil) else {
                throw ValidationError("--management-url is not a URL")
            }
            let scheduleOperations = AMQPScheduleOperations(
                endpoints: endpoints, scope: schedulerScope, logger: Logger(label: "warren.dashboard.schedules"))
            schedules = scheduleOperations
            services.append(.init(service: scheduleOperations.transport))
            inspector = AMQPQueueInspector(
                endpoints: endpoints, managementURL: management, logger: Logger(label: "warren.dashboard.queues"))
        }
        if noIngest {
            ledger = nil
        } else {
            let transport = RabbitMQTransport(endpoints: endpoints, connectionName: "warren-dashboard", logger: logger)
            let recording = Ledger(
                transport: transport, store: ledgerStore, queue: ledgerQueue, exchange: eventsExchange,
                retention: retention,
                logger: Logger(label: "warren.ledger"))
            ledger = recording
            services.append(.init(service: recording))
        }

        let router = Router(context: DashboardRequestContext.self)
        router.get("health") { _, _ -> Response in
            let ingest = ledger.map { $0.health.isReady ? "consuming" : "not_consuming" } ?? "off"
            return try JSONResponse.make(["ingest": ingest, "status": "ok"])
        }
        // Probes and the scrape, open like /health: probes and scrapers carry no token, and none of these says anything
        // of a job (counts, queue names, states). Bind --host to a private address, or filter at the proxy, to keep them
        // from the outside.
        let health = WarrenHealthEndpoints(workers: ledger.map { [$0.consumer] } ?? [], prometheus: prometheus)
        router.get("health/live") { _, _ -> Response in
            let liveness = health.liveness()
            return try JSONResponse.make(liveness, status: liveness.isLive ? .ok : .serviceUnavailable)
        }
        let readinessMonitor = DashboardReadinessMonitor(store: ledgerStore, ledger: ledger, logger: logger)
        services.append(.init(service: readinessMonitor))
        router.get("health/ready") { _, _ -> Response in
            let readiness = readinessMonitor.readiness()
            return try JSONResponse.make(readiness, status: readiness.status == "ready" ? .ok : .serviceUnavailable)
        }
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: prometheus.exposition())))
        }
        var dashboard: Dashboard
        do {
            dashboard = try Dashboard(
                store: ledgerStore, access: access, inspector: inspector, queueActions: queueActions, runner: runner,
                watchedQueues: queue,
                secureCookies: secureCookies, trustedProxies: trustedProxy)
        } catch let error as DashboardConfigurationError {
            throw ValidationError(error.message)
        }
        dashboard.schedules = schedules
        dashboard.addRoutes(to: router)
        if !secureCookies, !isLoopbackHost(host) {
            logger.warning(
                "serving a non-loopback address without --secure-cookies: sessions travel in clear unless a TLS proxy is in front (then pass --secure-cookies)",
                metadata: ["host": "\(host)"])
        }
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "warren-dashboard"),
            onServerRunning: { [host] channel in
                // One line a script or a test can read the address from (port 0 chooses one).
                FileHandle.standardOutput.write(
                    Data("listening on http://\(host):\(channel.localAddress?.port ?? 0)\n".utf8))
            },
            logger: logger.quietingServerCancellation())
        // Listed first, so that it stops last.
        services.insert(.init(service: app), at: 0)
        logger.info("warren-dashboard starting", metadata: ["store": "\(location)", "ingest": "\(!noIngest)"])
        let group = ServiceGroup(
            configuration: ServiceGroupConfiguration(
                services: services, gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
        // The store's connection pool runs around the whole group, so that it is there for the migration and stops
        // after every service that uses it.
        try await ledgerStore.withRunning {
            // Migrated before anything runs, so that the readiness probe's first question finds the schema in place.
            try await ledgerStore.migrate()
            try await group.run()
        }
        await inspector?.close()
        await queueActions?.close()
        await deadLetterTransport?.close()
        try? await ledgerStore.close()
    }

    /// `90s`, `30m`, `12h`, `7d`.
    static func duration(_ text: String) throws -> Duration {
        guard let milliseconds = ShortDuration.milliseconds(text) else {
            throw ValidationError("'\(text)' is not a duration such as 90s, 30m, 12h or 7d")
        }
        return .milliseconds(milliseconds)
    }
}
