import Foundation
import Logging
import Warren
import WarrenAMQP

/// Sends a dead letter back to work for the dashboard.
public protocol DeadLetterReplayer: Sendable {
    /// Replays the dead letters of `queue` with message id `messageID`, marking the copies with `replayID`.
    /// - Returns: how many were replayed (0 when none is in the queue any more).
    /// - Throws: when the broker cannot be reached or the queue has no dead-letter queue.
    func replay(messageID: String, queue: String, replayID: String) async throws -> Int
}

/// Replays from the work queue's dead-letter queue over AMQP (``DeadLetterReplay``): confirmed publish first, ack
/// second; then reports a `replayed` event per message to the events exchange, so the ledger shows the job as
/// replayed until a worker takes it. One connection, kept open between requests.
public actor AMQPDeadLetterReplayer: DeadLetterReplayer {
    private let endpoints: [AMQPEndpoint]
    private let eventsExchange: String
    private let logger: Logger
    private var connection: AMQPConnection?

    public init(endpoints: [AMQPEndpoint], eventsExchange: String = "warren.events", logger: Logger = Logger(label: "warren.dashboard.replay")) {
        self.endpoints = endpoints
        self.eventsExchange = eventsExchange
        self.logger = logger
    }

    public func replay(messageID: String, queue: String, replayID: String) async throws -> Int {
        let connection: AMQPConnection
        if let open = self.connection, open.isOpen {
            connection = open
        } else {
            connection = try await AMQPConnection.connect(to: endpoints, connectionName: "warren-dashboard replays", logger: logger)
            self.connection = connection
        }
        let events = try await DeadLetterReplay.replay(from: queue, on: connection, replayID: replayID) { $0.properties.messageID == messageID }
        do {
            try await DeadLetterReplay.report(events, on: connection, exchange: eventsExchange)
        } catch {
            logger.warning("replayed, but the replayed events were not sent", metadata: ["error": "\(error)", "replay_id": "\(replayID)"])
        }
        return events.count
    }

    public func close() async {
        await connection?.close()
        connection = nil
    }
}
