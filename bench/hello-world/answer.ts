/**
 * The hello-world Worker's answer: its body and its one header. A module of its own because workerd takes
 * every named export of a Worker's main module for an entrypoint. bench/catalog's FLOOR_DROP gives the
 * answer floor the same parts.
 */
export const HELLO_BODY = '{"hello":"world"}';
export const HELLO_CONTENT_TYPE = "application/json; charset=utf-8";
