import Foundation
import Testing
import Warren
import WarrenTestSupport

@Suite("Publisher: message ids and outbound messages")
struct PublisherTests {
    @Test func messageIDsAreLowercaseVersion4UUIDs() throws {
        let ids = (0..<10_000).map { _ in WarrenPublisher.newMessageID() }
        #expect(Set(ids).count == ids.count)
        for id in ids.prefix(1_000) {
            let uuid = try #require(UUID(uuidString: id), "\(id) is not a UUID")
            #expect(uuid.uuidString.lowercased() == id)
            let bytes = withUnsafeBytes(of: uuid.uuid) { Array($0) }
            #expect(bytes[6] >> 4 == 4, "version nibble of \(id)")
            #expect(bytes[8] >> 6 == 0b10, "variant bits of \(id)")
        }
        // Every other bit varies: OR-ing and AND-ing many ids leaves only the fixed bits set or clear.
        let all = ids.map { try! #require(UUID(uuidString: $0)) }.map { withUnsafeBytes(of: $0.uuid) { Array($0) } }
        let ored = all.reduce([UInt8](repeating: 0, count: 16)) { zip($0, $1).map { $0 | $1 } }
        let anded = all.reduce([UInt8](repeating: 0xFF, count: 16)) { zip($0, $1).map { $0 & $1 } }
        #expect(
            ored
                == [UInt8](repeating: 0xFF, count: 16).enumerated().map {
                    $0.offset == 6 ? 0x4F : $0.offset == 8 ? 0xBF : 0xFF
                })
        #expect(
            anded
                == [UInt8](repeating: 0, count: 16).enumerated().map {
                    $0.offset == 6 ? 0x40 : $0.offset == 8 ? 0x80 : 0
                })
    }

    @Test func anOutboxsMessagesAreSentLaterInOrderWithTheirIDs() async throws {
        let transport = InMemoryTransport()
        let publisher = WarrenPublisher(transport: transport, appID: "outbox")
        let stored = try (0..<3).map { n in
            try publisher.outboundMessage(
                WelcomeEmail(userId: "\(n)", email: "\(n)@example.com"), to: .queue("emails"), messageID: "o-\(n)")
        }
        #expect(transport.peek("emails").isEmpty, "built, not sent")
        let results = await publisher.publish(outbound: stored)
        #expect(results.count == 3)
        for result in results { try result.get() }
        #expect(transport.peek("emails").map(\.properties.messageID) == ["o-0", "o-1", "o-2"])
        #expect(
            transport.peek("emails").allSatisfy {
                $0.properties.appID == "outbox" && $0.properties.type == WelcomeEmail.messageType
            })
    }
}
