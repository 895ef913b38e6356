// The library: what a Node program embedding the control plane imports.
export { Dispatcher } from './dispatcher.js';
export type { BindResult, CreateOptions, DestinationRegistration, DestinationStatus, DispatcherOptions, OpenOptions, Registration, RejectCounter, ReplaceResult, Status } from './dispatcher.js';
export { parseBinding, toJSON as bindingToJSON, comparePrecedence, matchBinding } from './binding.js';
export type { Action, Binding, BindingInput, BindingJSON } from './binding.js';
export { parsePrefix, formatPrefix } from './prefix.js';
export type { Prefix, Family } from './prefix.js';
export type { Protocol, Domain } from './protocol.js';
export { TubularError } from './errors.js';
export * from './client.js';
