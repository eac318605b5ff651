//! Typed functions: a Rust `async fn(In) -> Result<Out, E>` registered on a
//! [`FunctionExecutor`] with serde types for its input and output. The task's
//! JSON input is read as `In` (a mismatch fails the run, naming the type), the
//! `Out` it returns is written as the run's JSON output, and an `Err(e)` fails the
//! run with `e`'s message on stderr.

use std::fmt::Display;
use std::future::Future;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::FunctionExecutor;

/// A function from `In` to `Out` that may fail with an error that displays:
/// every `Fn(In) -> impl Future<Output = Result<Out, E>>` with `E: Display`,
/// such as an `async fn resize(image: Image) -> Result<Thumbnail, MyError>`.
pub trait TypedFunction<In, Out>: Send + Sync + 'static {
    /// Calls the function; an error becomes its message.
    fn call(&self, input: In) -> BoxFuture<'static, Result<Out, String>>;
}

impl<In, Out, E, F, Fut> TypedFunction<In, Out> for F
where
    F: Fn(In) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Out, E>> + Send + 'static,
    E: Display,
    Out: 'static,
{
    fn call(&self, input: In) -> BoxFuture<'static, Result<Out, String>> {
        let returned = self(input);
        Box::pin(async move { returned.await.map_err(|e| e.to_string()) })
    }
}

impl FunctionExecutor {
    /// Registers the typed function `f` as `name` (replacing an earlier one of
    /// that name): `register_typed::<Image, Thumbnail, _>("resize", resize)`, or
    /// with the types inferred from `f`'s signature.
    pub fn register_typed<In, Out, F>(mut self, name: impl Into<String>, f: F) -> Self
    where
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + Send + 'static,
        F: TypedFunction<In, Out>,
    {
        self.register_typed_mut(name, f);
        self
    }

    /// In-place form of [`FunctionExecutor::register_typed`].
    pub fn register_typed_mut<In, Out, F>(&mut self, name: impl Into<String>, f: F) -> &mut Self
    where
        In: DeserializeOwned + Send + 'static,
        Out: Serialize + Send + 'static,
        F: TypedFunction<In, Out>,
    {
        let name = name.into();
        let called = name.clone();
        self.register_mut(name, move |input: Value| {
            let call = serde_json::from_value::<In>(input)
                .map(|input| f.call(input))
                .map_err(|e| format!("the input is not what {called} takes ({}): {e}", std::any::type_name::<In>()));
            let called = called.clone();
            async move {
                let output = call?.await?;
                serde_json::to_value(output).map_err(|e| {
                    format!("the output of {called} cannot be written as JSON ({}): {e}", std::any::type_name::<Out>())
                })
            }
        });
        self
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize)]
    struct Size {
        width: u32,
        height: u32,
    }

    #[derive(Serialize)]
    struct Area {
        pixels: u64,
    }

    async fn area(size: Size) -> Result<Area, String> {
        if size.width == 0 {
            return Err("width: must be at least 1".into());
        }
        Ok(Area { pixels: u64::from(size.width) * u64::from(size.height) })
    }

    fn call(executor: &FunctionExecutor, name: &str, input: Value) -> BoxFuture<'static, Result<Value, String>> {
        let f = executor.functions.get(name).expect("registered");
        f(input)
    }

    #[tokio::test]
    async fn a_typed_function_reads_its_input_type_and_writes_its_output_as_json() {
        let executor = FunctionExecutor::new().register_typed::<Size, Area, _>("area", area);
        let out = call(&executor, "area", json!({ "width": 3, "height": 4 })).await;
        assert_eq!(out, Ok(json!({ "pixels": 12 })));
    }

    #[tokio::test]
    async fn its_error_and_an_input_of_another_shape_fail_with_a_message_naming_what_was_wrong() {
        let executor = FunctionExecutor::new().register_typed("area", area);
        let refused = call(&executor, "area", json!({ "width": 0, "height": 4 })).await;
        assert_eq!(refused, Err("width: must be at least 1".to_owned()));
        let misfit = call(&executor, "area", json!({ "width": "wide" })).await.unwrap_err();
        assert!(misfit.starts_with("the input is not what area takes ("), "{misfit}");
        assert!(misfit.contains("Size"), "names the type: {misfit}");
    }
}
