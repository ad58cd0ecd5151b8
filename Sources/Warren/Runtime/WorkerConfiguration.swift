import Foundation
import WarrenAMQP

/// How a ``Worker`` connects and what it accepts.
public struct WorkerConfiguration: Sendable {
    /// The broker's nodes, tried in order.
    public var endpoints: [AMQPEndpoint]
    /// Shown in the management UI.
    public var connectionName: String
    /// Codecs by content type; JSON is the default.
    public var codecs: CodecRegistry
    /// Bodies larger than this go to the dead letters without being decoded.
    public var maximumMessageBytes: Int
    /// Queue type of the work, delay and dead-letter queues.
    public var queueType: WarrenTopology.QueueType
    /// The host name written into dead letters.
    public var hostName: String

    public init(
        endpoints: [AMQPEndpoint],
        connectionName: String = "warren-worker",
        codecs: CodecRegistry = CodecRegistry(),
        maximumMessageBytes: Int = 16 * 1024 * 1024,
        queueType: WarrenTopology.QueueType = .classic,
        hostName: String = ProcessInfo.processInfo.hostName
    ) {
        self.endpoints = endpoints
        self.connectionName = connectionName
        self.codecs = codecs
        self.maximumMessageBytes = maximumMessageBytes
        self.queueType = queueType
        self.hostName = hostName
    }
}
