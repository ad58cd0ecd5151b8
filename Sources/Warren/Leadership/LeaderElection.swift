import Foundation
import Logging
import Metrics
import ServiceLifecycle
import Synchronization
import WarrenAMQP

/// Work that one process among many does at a time: every process runs a `LeaderElection` with the same `work` on
/// the same broker; the one that wins runs `lead`, the others stand by and take over when it goes.
///
/// ```swift
/// let cleanup = LeaderElection(work: "cleanup", transport: transport) { leadership in
///     while !Task.isCancelled {
///         try await removeExpiredSessions()
///         try await Task.sleep(for: .seconds(60))
///     }
/// }
/// // in the ServiceGroup, beside the worker: services: [transport, worker, cleanup]
/// ```
///
/// **How it is elected.** On RabbitMQ the leader is the exclusive consumer of the durable, always-empty queue
/// `warren.leader.<work>` (or `warren.leader.<work>.<scope>`), held on a connection of the election's own; the other
/// processes are refused (403 ACCESS_REFUSED) and campaign again every `campaignInterval`. When the leader's process
/// ends or its connection drops, the broker frees the queue at once; when it freezes (a long GC pause, SIGSTOP, a VM
/// migrated), the broker frees it after two missed heartbeats. A standby leads at the latest `campaignInterval`
/// later: the failover time is at most 2 × heartbeat + `campaignInterval` (plus a connect) for a frozen leader, and
/// `campaignInterval` for one that died.
///
/// **What "one leader" guarantees, and where it stops.** The broker grants the queue to one connection at a time.
/// `lead` is cancelled as soon as this process learns its term has ended, but a frozen process learns it only when it
/// wakes — so `lead`'s own side effects (a database write, an HTTP call) can overlap with the next leader's in that
/// window. What it publishes through ``Leadership/publish(_:to:messageID:headers:)`` cannot: it goes out on the term's
/// connection, which the broker closed when it freed the queue, so a leader that wakes after losing cannot get a
/// message out (the publish throws ``WarrenError/Code/leadershipLost``). Make other side effects idempotent or fence
/// them with your own store.
///
/// `lead` runs until it returns, throws, or leadership ends; then the term is given up and the process campaigns
/// again after `campaignInterval` (a standby that was waiting gets the first chance). A graceful shutdown cancels `lead` and resigns at once, so a standby takes over within `campaignInterval`.
/// A change of leader is logged once on each side; ``role`` and the gauge `warren_is_leader{work}` follow it.
public final class LeaderElection: Service, Sendable {
    /// Where this process stands in the election.
    public enum Role: String, Sendable, Codable {
        /// It leads: `lead` runs.
        case leader
        /// Another process leads (or none yet); this one campaigns every `campaignInterval`.
        case standby
        /// ``run()`` is not running.
        case stopped
    }

    /// What a readiness report shows of an election.
    public struct Status: Sendable, Equatable, Codable {
        public var work: String
        public var role: Role
        /// Since when this process has had its role.
        public var since: Date
        /// The last error of a campaign, while the broker cannot be reached.
        public var lastError: String?

        enum CodingKeys: String, CodingKey {
            case work, role, since
            case lastError = "last_error"
        }
    }

    /// The name of the work led; processes with the same name (and scope) on one broker share the election.
    public let work: String
    /// What the election's queue is named after: `work`, or `work.scope`.
    public let election: String
    public let transport: any WarrenTransport
    /// How often a standby asks to lead.
    public let campaignInterval: Duration
    let codec: any MessageCodec
    let appID: String?
    let logger: Logger
    let lead: @Sendable (Leadership) async throws -> Void
    private let state: Mutex<Status>
    private let gauge: Gauge

    /// - Parameters:
    ///   - work: the work's name: 1–120 letters, digits, `.`, `_`, `-`.
    ///   - scope: narrows the election, e.g. to a store's identity, so that processes on one broker that work on
    ///     different stores each elect their own leader; same characters as `work`.
    ///   - campaignInterval: how often a standby (or a process that cannot reach the broker) tries again.
    ///   - codec: encodes what ``Leadership/publish(_:to:messageID:headers:)`` publishes.
    ///   - lead: the work, run while this process leads; cancelled when leadership ends.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` for a name out of those characters or a non-positive
    ///   interval.
    public init(
        work: String, scope: String? = nil, transport: any WarrenTransport,
        campaignInterval: Duration = .seconds(5), codec: any MessageCodec = JSONMessageCodec(), appID: String? = nil,
        logger: Logger = Logger(label: "warren.leadership"),
        lead: @escaping @Sendable (Leadership) async throws -> Void
    ) throws(WarrenError) {
        let election = scope.map { "\(work).\($0)" } ?? work
        try LeadershipNames.check(work, as: "a leader election's work")
        if let scope { try LeadershipNames.check(scope, as: "a leader election's scope") }
        try LeadershipNames.check(election, as: "a leader election's work and scope together")
        guard campaignInterval > .zero else {
            throw WarrenError(.invalidConfiguration, "a campaign interval must be positive: \(campaignInterval)")
        }
        self.work = work
        self.election = election
        self.transport = transport
        self.campaignInterval = campaignInterval
        self.codec = codec
        self.appID = appID
        var logger = logger
        logger[metadataKey: "work"] = .string(election)
        self.logger = logger
        self.lead = lead
        self.state = Mutex(Status(work: election, role: .stopped, since: Date(), lastError: nil))
        self.gauge = Gauge(label: WarrenMetric.isLeader.name, dimensions: [("work", election)])
    }

    /// Whether `name` is fit for a work's, a scope's or a schedule's name: 1–120 of `A-Z a-z 0-9 . _ -` (it becomes
    /// part of queue names).
    public static func isValidName(_ name: String) -> Bool { LeadershipNames.isValid(name) }

    /// The election as a readiness report lists it.
    public var report: LeadershipReport { LeadershipReport(status) }

    /// Where this process stands now.
    public var role: Role { state.withLock { $0.role } }

    /// The election as a readiness report shows it.
    public var status: Status { state.withLock { $0 } }

    private func become(_ role: Role, error: String? = nil) {
        state.withLock { status in
            if status.role != role {
                status.role = role
                status.since = Date()
            }
            status.lastError = error
        }
        gauge.record(role == .leader ? 1 : 0)
    }

    /// Campaigns, leads while elected, stands by otherwise, until a graceful shutdown or cancellation; then resigns.
    /// Never throws for the broker's absence: it logs it and campaigns again.
    /// - Throws: ``WarrenError/Code/invalidConfiguration`` when the transport holds no elections.
    public func run() async throws {
        become(.standby)
        defer { become(.stopped) }
        try await cancelWhenGracefulShutdown {
            var outage = false
            while !Task.isCancelled {
                let term: (any LeadershipTerm)?
                do {
                    term = try await self.transport.campaign(for: self.election)
                    if outage {
                        self.logger.notice("the election can reach the broker again")
                        outage = false
                    }
                } catch let error as WarrenError where error.code == .invalidConfiguration {
                    // A transport without elections, or a name it refuses: trying again cannot help.
                    self.logger.error("cannot campaign for leadership", metadata: ["error": "\(error)"])
                    throw error
                } catch {
                    if Task.isCancelled { break }
                    if !outage {
                        self.logger.error("cannot campaign for leadership", metadata: ["error": "\(error)"])
                        outage = true
                    }
                    self.become(.standby, error: "\(error)")
                    try? await Task.sleep(for: self.campaignInterval)
                    continue
                }
                if let term, Task.isCancelled {
                    // Won while shutting down: give it back at once rather than lead for a moment.
                    await term.resign()
                    break
                }
                guard let term else {
                    self.become(.standby)
                    try? await Task.sleep(for: self.campaignInterval)
                    continue
                }
                await self.serve(term)
            }
        }
    }

    /// Leads for the length of `term`.
    private func serve(_ term: any LeadershipTerm) async {
        let started = ContinuousClock.now
        become(.leader)
        logger.notice("leading", metadata: ["host": .string(ProcessInfo.processInfo.hostName)])
        let leadership = Leadership(
            work: election, since: Date(), term: term,
            builder: WarrenPublisher(transport: transport, codec: codec, appID: appID))
        enum Ending: Sendable {
            case lost
            case returned
            case failed(String)
            case cancelled
        }
        let ending = await withTaskGroup(of: Ending.self) { group in
            group.addTask {
                await term.waitUntilEnded()
                return Task.isCancelled ? .cancelled : .lost
            }
            group.addTask {
                do {
                    try await self.lead(leadership)
                    return .returned
                } catch {
                    return Task.isCancelled || error is CancellationError ? .cancelled : .failed("\(error)")
                }
            }
            let first = await group.next() ?? .cancelled
            // This process no longer leads, whether or not its work heeds the cancellation below at once.
            self.become(.standby)
            // Resigning ends the term, which is what the watcher waits for (a connection's close does not heed
            // cancellation); cancelling stops the work if it still runs.
            await term.resign()
            group.cancelAll()
            return first
        }
        let held: Logger.MetadataValue = .stringConvertible((ContinuousClock.now - started).milliseconds)
        switch ending {
        case .lost: logger.warning("leadership lost", metadata: ["held_ms": held])
        case .returned: logger.notice("stepped down: the work returned", metadata: ["held_ms": held])
        case .failed(let error):
            logger.error("stepped down: the work failed", metadata: ["held_ms": held, "error": .string(error)])
        case .cancelled: logger.notice("stepped down", metadata: ["held_ms": held])
        }
        // A standby that has waited gets the first chance to take over: this process campaigns again only after an
        // interval (a term lost to a dead connection would mostly be refused anyway while another holds it).
        if case .cancelled = ending { return }
        if !Task.isCancelled { try? await Task.sleep(for: campaignInterval) }
    }
}

/// A process's leadership while it lasts: what `lead` is given.
public struct Leadership: Sendable {
    /// The election's name (`work`, or `work.scope`).
    public let work: String
    /// When this process was elected.
    public let since: Date
    let term: any LeadershipTerm
    /// Builds what the leadership publishes; never sends it (the term does).
    let builder: WarrenPublisher

    /// Whether the leadership still holds as far as this process knows (a frozen process learns it lost only when
    /// it wakes; a fenced publish finds out for sure).
    public var isHeld: Bool { term.isHeld }

    /// Publishes `message` as the leader: on the leadership's own connection, confirmed by the broker, and only while
    /// the leadership holds — a process that lost it (even without knowing yet) cannot get the message out.
    /// - Returns: the message id.
    /// - Throws: ``WarrenError/Code/leadershipLost`` when the leadership ended first; the codec's or the broker's
    ///   error (`AMQPError` `.unroutable`, `.nacked`).
    @discardableResult
    public func publish<M: WarrenMessage>(
        _ message: M, to destination: Destination, messageID: String = WarrenPublisher.newMessageID(),
        headers: AMQPTable = [:]
    ) async throws -> String {
        try await term.publish(outbound(message, to: destination, messageID: messageID, headers: headers))
        return messageID
    }

    func outbound<M: WarrenMessage>(
        _ message: M, to destination: Destination, messageID: String, headers: AMQPTable
    ) throws -> OutboundMessage {
        try builder.outboundMessage(message, to: destination, messageID: messageID, headers: headers)
    }
}

/// An election's role in this process as a readiness body lists it (`/health/ready`'s and the dashboard's
/// `leadership`): `{"work", "role", "since"}`, `role` `leader`, `standby` or `stopped`.
public struct LeadershipReport: Sendable, Equatable, Encodable {
    public var work: String
    public var role: String
    /// Since when (ISO 8601) this process has had the role.
    public var since: String

    public init(work: String, role: String, since: String) {
        self.work = work
        self.role = role
        self.since = since
    }

    public init(_ status: LeaderElection.Status) {
        self.init(work: status.work, role: status.role.rawValue, since: status.since.formatted(.iso8601))
    }
}
