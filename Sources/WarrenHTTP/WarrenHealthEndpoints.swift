import Foundation
import Hummingbird
import Warren

/// Health probes and the Prometheus scrape endpoint of a Warren host, as Hummingbird routes:
///
/// - `GET /health/ready`: 200 when every transport is connected and every worker consumes each of its enabled
///   queues (or stands by for it); 503 otherwise. A broker outage shows here within the time the connection takes to
///   notice it (at once for a closed connection, two heartbeat intervals for a frozen broker).
/// - `GET /health/live`: 200 while every worker's loops make progress (``Worker/liveness``); 503 when one is stuck.
///   Never depends on the broker.
/// - The readiness body's `leadership` lists each ``LeaderElection`` given, with `leader` or `standby`: a standby
///   is ready (it takes over when the leader goes), so leadership never makes a host unready.
/// - `GET /metrics`: the Prometheus text exposition of ``WarrenPrometheus/registry``, when one is given.
///
/// Bodies are JSON in snake_case and carry no credentials. A host that already serves HTTP adds the routes to its
/// own router (``addRoutes(to:)``); others run a ``WarrenHTTPServer``.
public struct WarrenHealthEndpoints: Sendable {
    public let workers: [Worker]
    /// The transports whose connections readiness requires: the workers' own and those given.
    public let transports: [any WarrenTransport]
    public let prometheus: WarrenPrometheus?
    /// The elections whose role readiness reports (never whose outcome it requires).
    public let elections: [LeaderElection]

    /// - Parameters:
    ///   - workers: the workers whose queues readiness and liveness report.
    ///   - transports: further transports whose connection readiness requires (a publisher's).
    ///   - elections: the leader elections the readiness body lists (a ``Scheduler``'s `election`).
    ///   - prometheus: what `/metrics` serves; without it, `/metrics` answers 404.
    public init(
        workers: [Worker] = [], transports: [any WarrenTransport] = [], elections: [LeaderElection] = [],
        prometheus: WarrenPrometheus? = nil
    ) {
        self.workers = workers
        self.transports = workers.map(\.transport) + transports
        self.elections = elections
        self.prometheus = prometheus
    }

    /// What `/health/ready` reports.
    public struct Readiness: Sendable, Equatable, Encodable {
        public struct Queue: Sendable, Equatable, Encodable {
            public var queue: String
            public var state: String
            /// Why it is not consuming; `null` in the JSON when it is.
            public var lastError: String?

            enum CodingKeys: String, CodingKey {
                case queue, state
                case lastError = "last_error"
            }

            public func encode(to encoder: any Encoder) throws {
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(queue, forKey: .queue)
                try container.encode(state, forKey: .state)
                try container.encode(lastError, forKey: .lastError)  // null rather than absent: one shape for parsers
            }
        }

        public var isReady: Bool { status == "ready" }
        /// `ready` or `not_ready`.
        public var status: String
        /// Whether every transport's connection is open.
        public var connected: Bool
        public var queues: [Queue]
        /// Each election's role here: `leader`, `standby` or `stopped`.
        public var leadership: [Leadership] = []

        public typealias Leadership = LeadershipReport
    }

    /// What `/health/live` reports.
    public struct Liveness: Sendable, Equatable, Encodable {
        public struct Problem: Sendable, Equatable, Encodable {
            public var queue: String
            /// `consumer_stalled` or `handler_stuck`.
            public var kind: String
            public var stuckSeconds: Double

            enum CodingKeys: String, CodingKey {
                case queue, kind
                case stuckSeconds = "stuck_seconds"
            }
        }

        public var isLive: Bool { status == "live" }
        /// `live` or `not_live`.
        public var status: String
        public var problems: [Problem]
    }

    /// The readiness of every worker and transport now.
    public func readiness() -> Readiness {
        let connected = transports.allSatisfy(\.isConnected)
        let healths = workers.map(\.health)
        let queues = healths.flatMap(\.queues).map {
            Readiness.Queue(queue: $0.queue, state: $0.state.rawValue, lastError: $0.lastError)
        }
        let ready = connected && healths.allSatisfy(\.isReady) && !transports.isEmpty
        let leadership = elections.map(\.report)
        return Readiness(
            status: ready ? "ready" : "not_ready", connected: connected, queues: queues, leadership: leadership)
    }

    /// The liveness of every worker now.
    public func liveness() -> Liveness {
        let problems = workers.flatMap(\.liveness.problems).map {
            Liveness.Problem(
                queue: $0.queue, kind: $0.kind.rawValue,
                stuckSeconds: Double($0.duration.components.seconds) + Double($0.duration.components.attoseconds) / 1e18
            )
        }
        return Liveness(status: problems.isEmpty ? "live" : "not_live", problems: problems)
    }

    /// Adds `GET health/ready`, `GET health/live` and `GET metrics` to `router`, under its path (mount them on a
    /// group to put them elsewhere: `addRoutes(to: router.group("ops"))`).
    public func addRoutes<Context: RequestContext>(to router: some RouterMethods<Context>) {
        router.get("health/ready") { _, _ in
            let readiness = self.readiness()
            return try JSONResponse.make(readiness, status: readiness.isReady ? .ok : .serviceUnavailable)
        }
        router.get("health/live") { _, _ in
            let liveness = self.liveness()
            return try JSONResponse.make(liveness, status: liveness.isLive ? .ok : .serviceUnavailable)
        }
        router.get("metrics") { _, _ in
            guard let prometheus = self.prometheus else {
                return Response(status: .notFound, body: .init(byteBuffer: ByteBuffer(string: "no metrics registry\n")))
            }
            return Response(
                status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: .init(byteBuffer: ByteBuffer(bytes: prometheus.exposition())))
        }
    }
}
