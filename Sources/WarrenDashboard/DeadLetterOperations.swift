import Foundation
import Logging
import Warren
import WarrenAMQP

/// What an operator does to a dead letter from the dashboard: send it back to work, or delete it.
public protocol DeadLetterOperations: Sendable {
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
public actor AMQPDeadLetterOperations: DeadLetterOperations {
    private let endpoints: [AMQPEndpoint]
    private let eventsExchange: String
    private let logger: Logger
    private var connection: AMQPConnection?

    public init(endpoints: [AMQPEndpoint], eventsExchange: String = "warren.events", logger: Logger = Logger(label: "warren.dashboard.dead-letters")) {
        self.endpoints = endpoints
        self.eventsExchange = eventsExchange
        self.logger = logger
    }

    public func replay(messageID: String, queue: String, replayID: String) async throws -> Int {
        let connection = try await openConnection()
        let events = try await DeadLetterReplay.replay(from: queue, on: connection, replayID: replayID) { $0.properties.messageID == messageID }
        await report(events, on: connection)
        return events.count
    }

    public func purge(messageID: String, queue: String) async throws -> Int {
        let connection = try await openConnection()
        let events = try await DeadLetterReplay.purge(from: queue, on: connection) { $0.properties.messageID == messageID }
        await report(events, on: connection)
        return events.count
    }

    private func openConnection() async throws -> AMQPConnection {
        if let open = connection, open.isOpen { return open }
        let opened = try await AMQPConnection.connect(to: endpoints, connectionName: "warren-dashboard dead letters", logger: logger)
        connection = opened
        return opened
    }

    /// The operation is done whatever happens here: a failure is a warning.
    private func report(_ events: [WarrenEvent], on connection: AMQPConnection) async {
        do {
            try await DeadLetterReplay.report(events, on: connection, exchange: eventsExchange)
        } catch {
            logger.warning("done, but the events were not sent", metadata: ["error": "\(error)", "events": "\(events.count)"])
        }
    }

    public func close() async {
        await connection?.close()
        connection = nil
    }
}
