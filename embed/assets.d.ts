// Files imported `with { type: "file" }` resolve to their path.
declare module "*.so" {
  const path: string;
  export default path;
}
declare module "*.h" {
  const path: string;
  export default path;
}
