import Foundation

/// What a ``Worker`` accepts and how it stops.
public struct WorkerConfiguration: Sendable {
    /// Codecs by content type; JSON is the default.
    public var codecs: CodecRegistry
    /// Bodies larger than this go to the dead letters without being decoded.
    public var maximumMessageBytes: Int
    /// On a graceful shutdown, how long handlers already running may take to finish before they are cancelled (and
    /// their messages requeued).
    public var gracePeriod: Duration
    /// The host name written into dead letters.
    public var hostName: String

    public init(
        codecs: CodecRegistry = CodecRegistry(),
        maximumMessageBytes: Int = 16 * 1024 * 1024,
        gracePeriod: Duration = .seconds(30),
        hostName: String = ProcessInfo.processInfo.hostName
    ) {
        self.codecs = codecs
        self.maximumMessageBytes = maximumMessageBytes
        self.gracePeriod = gracePeriod
        self.hostName = hostName
    }
}
