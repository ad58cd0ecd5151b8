import Foundation
import Logging
import Warren
import WarrenAMQP

/// What an operator does to a dead letter from the dashboard: send it back to work, or delete it.
public protocol DeadLetterQueueActions: Sendable {
    /// Replays the dead letters of `queue` with message id `messageID`, marking the copies with `replayID`.
    /// - Returns: how many were replayed (0 when none is in the queue any more).
    /// - Throws: when the broker cannot be reached or the queue has no dead-letter queue.
    func replay(messageID: String, queue: String, replayID: String) async throws -> Int
    /// Deletes the dead letters of `queue` with message id `messageID` for good.
    /// - Returns: how many were deleted (0 when none is in the queue any more).
    /// - Throws: as ``replay(messageID:queue:replayID:)``.
    func purge(messageID: String, queue: String) async throws -> Int
}

/// Replays and purges in the work queue's dead-letter queue over AMQP (``DeadLetterReplay``): for a replay,
/// confirmed publish first, ack second. Then reports a `replayed` or `purged` event per message to the events
/// exchange, so the ledger shows the job as replayed until a worker takes it, or as purged. One connection, kept open
/// between requests.
public actor AMQPDeadLetterQueueActions: DeadLetterQueueActions {
    private let eventsExchange: String
    private let logger: Logger
    private let connection: ReusedConnection

    public init(
        endpoints: [AMQPEndpoint], eventsExchange: String = "warren.events",
        logger: Logger = Logger(label: "warren.dashboard.dead-letters")
    ) {
        self.eventsExchange = eventsExchange
        self.logger = logger
        self.connection = ReusedConnection(endpoints: endpoints, name: "warren-dashboard dead letters", logger: logger)
    }

    public func replay(messageID: String, queue: String, replayID: String) async throws -> Int {
        try await run {
            try await DeadLetterReplay.replay(from: queue, on: $0, replayID: replayID) {
                $0.properties.messageID == messageID
            }
        }
    }

    public func purge(messageID: String, queue: String) async throws -> Int {
        try await run { try await DeadLetterReplay.purge(from: queue, on: $0) { $0.properties.messageID == messageID } }
    }

    /// Runs `operation`, then reports its events; the operation is done whatever happens to the report (a failure
    /// there is a warning). Returns how many dead letters it settled.
    private func run(_ operation: (AMQPConnection) async throws -> [WarrenEvent]) async throws -> Int {
        let opened = try await connection.open()
        let events = try await operation(opened)
        do {
            try await DeadLetterReplay.report(events, on: opened, exchange: eventsExchange)
        } catch {
            logger.warning(
                "done, but the events were not sent", metadata: ["error": "\(error)", "events": "\(events.count)"])
        }
        return events.count
    }

    public func close() async {
        await connection.close()
    }
}

/// One AMQP connection, opened on first use and again whenever the one before has closed. Requests that need it
/// while it is being opened wait for that one connection (the actor gives up its turn while connecting, so each of
/// them would otherwise open a connection of its own, and all but the last would leak with their I/O threads).
actor ReusedConnection {
    private let endpoints: [AMQPEndpoint]
    private let name: String
    private let logger: Logger
    private var connection: AMQPConnection?
    private var connecting: Task<AMQPConnection, any Error>?
    /// How many connections it opened (what a test counts).
    private(set) var opened = 0

    init(endpoints: [AMQPEndpoint], name: String, logger: Logger) {
        self.endpoints = endpoints
        self.name = name
        self.logger = logger
    }

    func open() async throws -> AMQPConnection {
        if let connection, connection.isOpen { return connection }
        if let connecting { return try await connecting.value }
        let (endpoints, name, logger) = (endpoints, name, logger)
        // Unstructured, and awaited by every request that needs the connection meanwhile: the connecting belongs to no
        // one request (the one that started it may be cancelled while others wait). It ends with the connect.
        let task = Task { try await AMQPConnection.connect(to: endpoints, connectionName: name, logger: logger) }
        connecting = task
        defer { connecting = nil }
        let made = try await task.value
        opened += 1
        connection = made
        return made
    }

    func close() async {
        if let connecting, let made = try? await connecting.value { await made.close() }
        await connection?.close()
        connection = nil
    }
}

/// The former name of ``DeadLetterQueueActions``.
@available(*, deprecated, renamed: "DeadLetterQueueActions")
public typealias DeadLetterOperations = DeadLetterQueueActions

/// The former name of ``AMQPDeadLetterQueueActions``.
@available(*, deprecated, renamed: "AMQPDeadLetterQueueActions")
public typealias AMQPDeadLetterOperations = AMQPDeadLetterQueueActions
