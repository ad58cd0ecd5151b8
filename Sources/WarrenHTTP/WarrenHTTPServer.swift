import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization
import Warren

/// A small HTTP server for ``WarrenHealthEndpoints``, as a `Service` for the host's `ServiceGroup`.
///
/// It listens on 127.0.0.1 unless told otherwise: Kubernetes probes reach a pod on its own address, so a host run
/// there binds `0.0.0.0` (or the pod's IP). It stops when the group shuts down gracefully.
///
/// ```swift
/// let server = WarrenHTTPServer(endpoints: WarrenHealthEndpoints(workers: [worker], prometheus: prometheus), port: 8080)
/// let group = ServiceGroup(services: [worker, server], gracefulShutdownSignals: [.sigterm], logger: logger)
/// ```
public final class WarrenHTTPServer: Service, Sendable {
    public let endpoints: WarrenHealthEndpoints
    public let host: String
    /// The port asked for; 0 lets the system choose (see ``waitUntilListening(timeout:)``).
    public let port: Int
    private let logger: Logger
    private let listening = AwaitableState<Int?>(nil)

    public init(
        endpoints: WarrenHealthEndpoints, host: String = "127.0.0.1", port: Int,
        logger: Logger = Logger(label: "warren.http")
    ) {
        self.endpoints = endpoints
        self.host = host
        self.port = port
        self.logger = logger
    }

    /// Serves until the `ServiceGroup` shuts down gracefully or the task is cancelled.
    /// - Throws: when it cannot listen on ``host``:``port``.
    public func run() async throws {
        let router = Router()
        endpoints.addRoutes(to: router)
        let app = Application(
            router: router, configuration: .init(address: .hostname(host, port: port), serverName: "warren"),
            onServerRunning: { [listening, logger, host] channel in
                let port = channel.localAddress?.port ?? 0
                logger.info(
                    "serving health and metrics", metadata: ["host": "\(host)", "port": .stringConvertible(port)])
                listening.update { $0 = port }
            },
            logger: logger.quietingServerCancellation())
        try await app.run()
    }

    /// The port the server listens on, once it does.
    /// - Throws: ``WarrenHTTPError`` with ``WarrenHTTPError/Code/cannotListen`` when it does not within `timeout`.
    public func waitUntilListening(timeout: Duration = .seconds(30)) async throws -> Int {
        _ = await listening.wait(until: { $0 != nil }, timeout: timeout)
        guard let port = listening.value else {
            throw WarrenHTTPError(.cannotListen, "the HTTP server did not listen on \(host):\(port) within \(timeout)")
        }
        return port
    }
}

extension Logger {
    /// This logger for a Hummingbird `Application` in a `ServiceGroup`: Hummingbird's two error lines when the group
    /// cancels it because another service failed at start (`Waiting on child channel: CancellationError()`, `Server
    /// shutdown error: Already closed`) go out at debug, so that the failure that matters is the one error line.
    public func quietingServerCancellation() -> Logger {
        let base = handler
        var logger = Logger(label: label, factory: { _ in CancellationIsNotAnError(base: base) })
        logger.logLevel = logLevel
        return logger
    }
}

/// Passes every log line on, except Hummingbird's errors that its accept loop was cancelled (`Waiting on child channel:
/// CancellationError()`) and that its channel was closed already when the graceful shutdown came (`Server shutdown
/// error: Already closed`): the group cancels the server when another service fails at start, and that service's error
/// is the one line the failure deserves. Those lines go on at debug.
struct CancellationIsNotAnError: LogHandler {
    var base: any LogHandler

    var logLevel: Logger.Level {
        get { base.logLevel }
        set { base.logLevel = newValue }
    }

    var metadata: Logger.Metadata {
        get { base.metadata }
        set { base.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { base[metadataKey: key] }
        set { base[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        var event = event
        if event.level >= .error {
            let message = "\(event.message)"
            if message == "Waiting on child channel: CancellationError()"
                || message == "Server shutdown error: Already closed"
            {
                event.level = .debug
            }
        }
        guard event.level >= base.logLevel else { return }
        base.log(event: event)
    }
}
