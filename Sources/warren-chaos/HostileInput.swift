import Foundation
import Warren
import WarrenAMQP

/// The bad messages of the `hostile` scenario, one kind after the other.
enum HostileInput {
    /// The worker's body limit in that scenario.
    static let maximumBytes = 1024 * 1024

    private static let deepJSON = Array(String(repeating: "[", count: 50_000).utf8)
    /// The largest body sent (over the limit, so dead-lettered undecoded).
    static let largestBody = 2 * 1024 * 1024
    private static let tooLarge = [UInt8](repeating: 0x7B, count: largestBody)
    private static let deepHeader: AMQPFieldValue = {
        var value: AMQPFieldValue = "bottom"
        for _ in 0..<100 { value = .table(["n": value]) }
        return value
    }()

    static func message(_ n: Int, id: String) -> ([UInt8], AMQPProperties) {
        let valid = Array(#"{"n":\#(n)}"#.utf8)
        var properties = AMQPProperties(
            contentType: "application/json", deliveryMode: .persistent, messageID: id, type: ChaosJob.messageType)
        switch n % 8 {
        case 0:
            return (valid, properties)
        case 1:
            return (tooLarge, properties)
        case 2:
            return ([0xFF, 0xFE, 0x7B, 0xC3, 0x28] + valid, properties)
        case 3:
            return (deepJSON, properties)
        case 4:
            properties.headers = [
                "nested": deepHeader,
                "x-death": [["queue": "elsewhere", "count": .int64(-1)], "not-a-table", .void],
                WarrenHeader.attempt: "lots", WarrenHeader.redeliveries: .bytes([0xFF]),
            ]
            return (valid, properties)
        case 5:
            return ([], properties)
        case 6:
            properties.type = nil
            return (valid, properties)
        default:
            properties.contentEncoding = "gzip"
            return (valid, properties)
        }
    }
}
