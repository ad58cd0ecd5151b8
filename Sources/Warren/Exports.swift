// The client's types that Warren's own API takes and gives (message properties and headers, endpoints, the client's
// errors): a user of Warren imports one module. The rest of the client stays behind `import WarrenAMQP`.
@_exported import struct WarrenAMQP.AMQPEndpoint
@_exported import struct WarrenAMQP.AMQPError
@_exported import enum WarrenAMQP.AMQPFieldValue
@_exported import struct WarrenAMQP.AMQPProperties
@_exported import typealias WarrenAMQP.AMQPTable
