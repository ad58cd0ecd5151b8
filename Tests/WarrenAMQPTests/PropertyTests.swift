import PropertyBased
import Testing
import WarrenTestSupport

@testable import WarrenAMQP

/// Generated inputs for the two parsers that face the outside world: URIs and field tables.
@Suite("Properties of URI parsing and field tables")
struct PropertyTests {
    static let printable = Gen.character(in: " "..."~")
    static let byte = Gen.int(in: 0...255).map { UInt8($0) }
    static let key = Gen.letterOrNumber.string(of: 1...12)
    static let scalar = Gen<AMQPFieldValue>.oneOf(
        Gen.int(in: Int(Int32.min)...Int(Int32.max)).map { AMQPFieldValue.int32(Int32($0)) },
        Gen.int().map { AMQPFieldValue.int64(Int64($0)) },
        Gen.bool.map { AMQPFieldValue.bool($0) },
        printable.string(of: 0...24).map { AMQPFieldValue.string($0) },
        byte.array(of: 0...16).map { AMQPFieldValue.bytes($0) },
        Gen.int(in: -1_000_000...1_000_000).map { AMQPFieldValue.double(Double($0) / 8) },
        Gen.int(in: 0...Int(UInt32.max)).map { AMQPFieldValue.timestamp(UInt64($0)) }
    )
    static let flatTable = zip(key, scalar).dictionary(ofAtMost: 0...6)
    static let nestedTable = zip(
        key,
        Gen<AMQPFieldValue>.oneOf(
            scalar,
            flatTable.map { AMQPFieldValue.table($0) },
            scalar.array(of: 0...4).map { AMQPFieldValue.array($0) }
        )
    ).dictionary(ofAtMost: 0...6)

    @Test func everyGeneratedTableSurvivesTheWireUnchanged() async {
        await propertyCheck(count: 300, input: Self.nestedTable) { table in
            let bytes = FieldTableWireCodec.encode(table)
            #expect(bytes != nil)
            #expect(bytes.flatMap(FieldTableWireCodec.decode) == table)
        }
    }

    @Test func randomBytesNeverCrashTheTableDecoder() async {
        await propertyCheck(count: 500, input: Self.byte.array(of: 0...80)) { bytes in
            // A plausible length prefix makes the decoder walk into the garbage instead of stopping at once.
            let framed = [0, 0, 0, UInt8(min(bytes.count, 255))] + bytes
            _ = FieldTableWireCodec.decode(framed)
            _ = FieldTableWireCodec.decode(bytes)
        }
    }

    @Test func credentialsAndVirtualHostsRoundTripThroughPercentEncoding() async {
        let text = Self.printable.string(of: 0...16)
        await propertyCheck(count: 300, input: text, text, Self.printable.string(of: 1...16)) { user, password, vhost in
            let uri =
                "amqp://\(AMQPURIParser.percentEncode(user)):\(AMQPURIParser.percentEncode(password))@rabbit.example:5673/\(AMQPURIParser.percentEncode(vhost))"
            let endpoint = try? AMQPEndpoint(uri: uri)
            #expect(endpoint?.username == user)
            #expect(endpoint?.password == password)
            #expect(endpoint?.virtualHost == vhost)
            #expect(endpoint?.port == 5673)
            if !password.isEmpty, password.count > 3 {
                #expect(endpoint.map { !$0.description.contains(password) } ?? true)
            }
        }
    }

    @Test func arbitraryTextNeverCrashesTheURIParser() async {
        await propertyCheck(count: 500, input: Self.printable.string(of: 0...60)) { tail in
            for uri in ["amqp://" + tail, "amqps://" + tail, tail] {
                do {
                    let endpoint = try AMQPEndpoint(uri: uri)
                    #expect((1...65535).contains(endpoint.port))
                } catch {
                    #expect((error as? AMQPError)?.code == .invalidURI)
                }
            }
        }
    }
}
