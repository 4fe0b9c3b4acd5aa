// placeholder
use crate::Reporter;
pub async fn typed(_r: &Reporter, _dsn: &str, _args: &[String]) {}
pub async fn customers(_r: &Reporter, _dsn: &str, _args: &[String]) {}
